"""`actionparty benchmark rl`: does a policy trained in the dream score in the real game?

    python -m benchmarks.rl --game coins --timesteps 1000000 [--dream-worlds 64] [--real-worlds 8] \\
        [--episode 200] [--eval-episodes 32] [--device auto] [--checkpoint DIR] [--work DIR] \\
        [--out-dir benchmarks/results --tag TAG]
    python -m benchmarks.rl --game coins --timesteps 4096 --dream-worlds 2 --real-worlds 2 \\
        --eval-episodes 2 --episode 20 --curve-points 0 --device cpu     # a CPU smoke run of the plumbing
    python -m benchmarks.rl --game clean_up --background rl_mix [--focal 1] ...   # Melting Pot's scenarios

Three arms, one shared policy for every player (parameter sharing, SB3 PPO with a CnnPolicy):
- `random`: uniform random actions;
- `real`: PPO trained in the real Melting Pot (`RealVecEnv`: `--real-worlds` games in subprocesses);
- `dream`: PPO trained in the dream (`DreamVecEnv`: `--dream-worlds` worlds in one batched model call).
Both PPO arms get the same budget (`--timesteps`, one per player per step) and the same settings
(`PPOSettings`), including the same number of samples per update: n_steps = rollout / slots, so the
arm with fewer env slots collects longer stretches. Episodes are truncated at `--episode` steps in
both (Melting Pot's own end may come first in the real game). Every arm is scored in the real game over
`--eval-episodes` episodes whose seeds (EVAL_SEED + i x players) no training episode used (checked:
the training worlds' seeds are kept and compared), with the policy's sampled actions (as trained), and
in the dream over as many dreams.

Reported per arm: mean per-player return per episode and its standard error, in the real game and in
the dream, twice: in self-play (every player acts by the arm's policy) and as a focal player among
random background players (Melting Pot's own evaluation protocol: in each episode one player acts by the
policy, the others at random, and the focal player's return counts). The second tells what a policy
learned where self-play hides it: in coins, a social dilemma, selfish collectors cost each other what
they earn (+1 a coin, -2 to its owner), so self-play scores near 0 however well each one plays. Then, with 95% bootstrap intervals (episodes resampled per arm, 2,000 times):
- transfer ratio = (real return of the dream-trained policy - random) / (real-trained - random);
- exploitation gap = (dream-trained policy's return in the dream - its return in the real game) /
  (real-trained - random): what the dream promises beyond what the game pays, in units of what PPO
  learns in the real game (dividing by the dream policy's own real return would blow up where it is near
  0, as in coins);
- `real > random`: whether the real-trained policy's interval excludes random's (else the budget is too
  small to say anything about transfer).
Learning curves: the training episodes' returns (each arm in its own env: the dream arm's are what
the dream pays) and `--curve-points` real-game scores of each policy during training.

With `--background rl_mix` (Melting Pot's scenarios; benchmarks/scenario.py) the arms are trained and
scored as focal players among background bots: in every world of both envs, in training and in scoring,
`--focal` K players (default 1; at least one player is left to the background) act by the arm's policy
and the others by `training.policies.rl_mix`, seeded by the world's episode seed and restarted with it,
closed-loop on the world's global frame, players' states and rewards (`world_states()` of both envs).
PPO sees only the focal slots (worlds x K), so a timestep is one focal player's step. Evaluation
episode i starts from EVAL_SEED + i x K; its focal players are the K from its seed mod N on, so each
evaluation seed puts every arm in the same slots among the same bots, and the seeds rotate the focal
slot through every player. Reported: the focal players' mean return per episode (random: random focal
players among the same bots), with the same statistics, labelled "focal among rl_mix background
players"; self-play and the random-background table are left out (the policies were trained among
rl_mix, not among copies of themselves or random players). This is the score clean_up needs: apples grow
only while someone cleans the river, PPO in self-play never learns to, and rl_mix's cleaners do. A
policy trained one way is refused for scoring the other way.

Training writes `--work`/GAME/{real,dream}.zip and .json (curve, seeds) and SB3's per-update log
{real,dream}_log/progress.csv; `--train` picks the arms to train
(`--train` alone trains none and scores the policies already in `--work`: the GPU job trains the two arms
in parallel processes, then scores). Writes rl_<tag>_<game>.json and .png under --out-dir, and
rl_<tag>.md: the table of every rl_<tag>_*.json there (machine, command, commit).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from tqdm import tqdm

from actionparty_env import DreamVecEnv
from actionparty_env.games import get_game
from actionparty_env.real_vector import RealVecEnv
from benchmarks.provenance import git_commit, machine
from benchmarks.scenario import BACKGROUNDS, FOCAL_RULE, ScenarioVecEnv

ARMS = ("random", "real", "dream")
TRAINED = ("real", "dream")
EVAL_SEED = 1_000_000_000  # eval episode i starts from EVAL_SEED + i * players; training seeds are checked against it
Act = Callable[[np.ndarray], np.ndarray]  # observations [slots, 3, V, V] -> actions [slots]


@dataclass(frozen=True)
class PPOSettings:
    """The PPO of both trained arms (CleanRL's Atari settings, scaled to many env slots)."""

    rollout: int = 8192        # samples per update, whatever the number of slots
    minibatches: int = 8
    epochs: int = 4
    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.1
    ent_coef: float = 0.01
    vf_coef: float = 0.5

    def make(self, env: VecEnv, seed: int, device: str) -> PPO:
        n_steps = max(8, self.rollout // env.num_envs)
        return PPO("CnnPolicy", env, n_steps=n_steps, batch_size=n_steps * env.num_envs // self.minibatches,
                   n_epochs=self.epochs, learning_rate=self.learning_rate, gamma=self.gamma,
                   gae_lambda=self.gae_lambda, clip_range=self.clip_range, ent_coef=self.ent_coef,
                   vf_coef=self.vf_coef, seed=seed, device=device, verbose=0)


# --- scoring ---
def episode_returns(env: VecEnv, act: Act, episodes: int, seed: int, background: Act | None = None) -> np.ndarray:
    """Mean per-player return of `episodes` episodes of `env`, world w of batch j seeded
    seed + (j * worlds + w) * players. Each world's first episode counts; its auto-reset is ignored.
    With `background`, Melting Pot's focal-vs-background protocol: in episode i one focal player
    (number i % players) acts by `act`, every other player by `background`, and the focal player's
    return is the episode's."""
    worlds, players = env.num_worlds, env.num_players
    out = []
    for batch in range(-(-episodes // worlds)):
        env.seed(seed + batch * env.num_envs)
        obs = env.reset()
        total, done = np.zeros(env.num_envs), np.zeros(env.num_envs, bool)
        first = batch * worlds + np.arange(worlds)  # the episodes' numbers
        focal = np.arange(worlds) * players + first % players  # their focal slots (world-major)
        while not done.all():
            if background is None:
                actions = act(obs)
            else:
                actions = np.asarray(background(obs)).copy()
                actions[focal] = act(obs[focal])
            obs, rewards, dones, _ = env.step(actions)
            total += np.where(done, 0.0, rewards)
            done |= dones
        out.extend(total.reshape(worlds, players).mean(1) if background is None else total[focal])
    return np.asarray(out[:episodes])


def policy_act(model: PPO) -> Act:
    return lambda obs: model.predict(obs, deterministic=False)[0]


def random_act(num_actions: int, seed: int) -> Act:
    rng = np.random.default_rng(seed)
    return lambda obs: rng.integers(num_actions, size=len(obs))


def bootstrap(statistic: Callable[..., float], samples: list[np.ndarray], draws: int = 2000,
              seed: int = 0) -> list[float | None]:
    """[the statistic of the samples, the 2.5% and 97.5% percentiles of its bootstrap], each sample
    resampled on its own; None where it is undefined (a ratio over 0)."""
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic(*samples))
        draws_ = np.asarray([statistic(*[s[rng.integers(len(s), size=len(s))] for s in samples])
                             for _ in range(draws)], float)
    draws_ = draws_[np.isfinite(draws_)]
    lo, hi = np.percentile(draws_, [2.5, 97.5]) if len(draws_) else (None, None)
    return [value if np.isfinite(value) else None] + [None if v is None else float(v) for v in (lo, hi)]


def mean_se(r: np.ndarray) -> tuple[float, float | None]:
    """The mean and its standard error (None from one sample)."""
    return float(r.mean()), (float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else None)


def summary(returns: dict[str, dict[str, np.ndarray]]) -> dict:
    """Means, standard errors, the transfer ratio, the exploitation gap and whether real beats random."""
    real = {arm: returns[arm]["real"] for arm in ARMS}
    arms = {arm: {where: dict(zip(("mean", "se"), mean_se(r)), episodes=len(r)) for where, r in returns[arm].items()}
            for arm in ARMS}
    learned = bootstrap(lambda r, x: r.mean() - x.mean(), [real["real"], real["random"]])
    transfer = bootstrap(lambda d, r, x: (d.mean() - x.mean()) / (r.mean() - x.mean()),
                         [real["dream"], real["real"], real["random"]])
    gap = bootstrap(lambda dd, d, r, x: (dd.mean() - d.mean()) / (r.mean() - x.mean()),
                    [returns["dream"]["dream"], real["dream"], real["real"], real["random"]])
    return {"arms": arms, "real_minus_random": learned, "real_beats_random": bool(learned[1] is not None and learned[1] > 0),
            "transfer_ratio": transfer, "exploitation_gap": gap}


# --- training ---
class Progress(BaseCallback):
    """A tqdm bar, the training episodes' returns (VecMonitor's), their seeds, real-game scores at
    `curve_at` timesteps, and a stop at `deadline` (time.time(); a guard for a leased machine)."""

    def __init__(self, env: DreamVecEnv | RealVecEnv | ScenarioVecEnv, total: int, label: str,
                 curve_at: list[int], score: Callable[[PPO], np.ndarray], deadline: float = float("inf")):
        super().__init__()
        self.env, self.total, self.label, self.deadline = env, total, label, deadline
        self.curve_at, self.score = list(curve_at), score
        self.episodes: list[tuple[int, float]] = []
        self.scores: list[tuple[int, float, float]] = []
        self.seeds: set[int] = set()

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, desc=self.label, unit="step", mininterval=5, file=sys.stdout)

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        self.seeds.update(self.env.episode_seeds.tolist())
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        if self.curve_at and self.num_timesteps >= self.curve_at[0]:
            self.curve_at.pop(0)
            r = self.score(self.model)
            self.scores.append((self.num_timesteps, *mean_se(r)))
            self.bar.set_postfix(real=f"{r.mean():+.2f}")
        return time.time() < self.deadline

    def _on_training_end(self) -> None:
        self.bar.close()


def scenario(env: DreamVecEnv | RealVecEnv, args: argparse.Namespace) -> VecEnv:
    """`env` itself, or with `--background` its `--focal` focal slots per world among the background players."""
    return ScenarioVecEnv(env, args.focal, args.background) if args.background else env


def train_arm(arm: str, args: argparse.Namespace, work: Path) -> None:
    """Train one PPO arm for args.timesteps; save its policy and its curve under `work`."""
    n = get_game(args.game).num_players
    if arm == "dream":
        env = DreamVecEnv(args.game, num_worlds=args.dream_worlds, checkpoint=args.checkpoint, device=args.device,
                          max_cycles=args.episode, channels_first=True, seed=args.seed, cuda_graph=not args.no_cuda_graph,
                          compile=args.compile)
    else:
        env = RealVecEnv(args.game, num_worlds=args.real_worlds, max_cycles=args.episode, channels_first=True,
                         seed=args.seed)
    env = scenario(env, args)
    scorer = scenario(RealVecEnv(args.game, num_worlds=min(args.real_worlds, args.curve_episodes),
                                 max_cycles=args.episode, channels_first=True), args) if args.curve_points else None
    curve_at = [int(args.timesteps * (i + 1) / args.curve_points) for i in range(args.curve_points)]
    model = PPOSettings(rollout=args.rollout).make(VecMonitor(env), args.seed, args.device)
    # SB3's losses and episode stats per update go to work/<arm>_log/progress.csv (its default logger
    # would leave an empty folder in the system temp dir on every run).
    model.set_logger(configure_logger(str(work / f"{arm}_log"), ["csv"]))
    per_update = model.n_steps * env.num_envs  # learn() stops after the update that reaches the budget
    callback = Progress(env, -(-args.timesteps // per_update) * per_update, f"{args.game} {arm}", curve_at,
                        lambda model: episode_returns(scorer, policy_act(model), args.curve_episodes, EVAL_SEED),
                        deadline=time.time() + 60 * args.max_minutes)
    start = time.time()
    model.learn(total_timesteps=args.timesteps, callback=callback)
    seconds = time.time() - start
    model.save(work / f"{arm}.zip")
    eval_seeds = set(range(EVAL_SEED, EVAL_SEED + args.eval_episodes * n + 1))
    record = {"arm": arm, "command": "python -m benchmarks.rl " + " ".join(args.argv), "timesteps": model.num_timesteps, "budget": args.timesteps,
              "stopped_at_max_minutes": model.num_timesteps < args.timesteps, "seconds": round(seconds, 1),
              "timesteps_per_s": round(model.num_timesteps / seconds, 1), "slots": env.num_envs,
              "n_steps": model.n_steps, "background": args.background, "focal": args.focal if args.background else None,
              "episodes": callback.episodes, "real_scores": callback.scores,
              "training_episodes": len(callback.seeds), "seeds_shared_with_eval": len(callback.seeds & eval_seeds)}
    (work / f"{arm}.json").write_text(json.dumps(record))
    print(f"{args.game} {arm}: {model.num_timesteps} timesteps in {seconds:.0f} s "
          f"({record['timesteps_per_s']:.0f}/s), {len(callback.seeds)} training episodes")
    env.close()
    if scorer is not None:
        scorer.close()


def score_arms(args: argparse.Namespace, work: Path) -> dict:
    """Every arm in the real game and in the dream, on the evaluation seeds: in self-play and as a focal
    player among random ones, or with `--background` as the focal players among the background bots."""
    game = get_game(args.game)
    missing = [arm for arm in TRAINED if not (work / f"{arm}.zip").is_file()]
    if missing:
        raise SystemExit(f"no trained policy for {', '.join(missing)} in {work}: train it first (--train {' '.join(missing)})")
    training = {arm: json.loads((work / f"{arm}.json").read_text()) for arm in TRAINED}
    how = lambda b, k: "in self-play" if b is None else f"as {k} focal player(s) among {b}"  # noqa: E731
    for arm, tr in training.items():  # a self-play policy scored as a focal one (or back) measures nothing asked
        if (tr.get("background"), tr.get("focal")) != (args.background, args.focal if args.background else None):
            raise SystemExit(f"the {arm} policy in {work} was trained {how(tr.get('background'), tr.get('focal'))}, "
                             f"not {how(args.background, args.focal)}: train it so, or score another --work")
    acts = {"random": random_act(game.num_actions, args.seed)}
    acts.update({arm: policy_act(PPO.load(work / f"{arm}.zip", device=args.device)) for arm in TRAINED})
    worlds = min(args.real_worlds, args.eval_episodes)
    envs = {"real": RealVecEnv(args.game, num_worlds=worlds, max_cycles=args.episode, channels_first=True),
            "dream": DreamVecEnv(args.game, num_worlds=min(args.dream_worlds, args.eval_episodes),
                                 checkpoint=args.checkpoint, device=args.device, max_cycles=args.episode,
                                 channels_first=True, cuda_graph=not args.no_cuda_graph, compile=args.compile)}
    envs = {where: scenario(env, args) for where, env in envs.items()}
    # Self-play (every player acts by the arm's policy) and focal (one player does, beside random ones);
    # in a scenario the env's slots are the focal players already, among the background bots.
    background = random_act(game.num_actions, args.seed + 1)
    returns, focal = {arm: {} for arm in ARMS}, {arm: {} for arm in ARMS}
    for where, env in envs.items():
        for arm, act in tqdm(acts.items(), desc=f"score in the {where} game", file=sys.stdout):
            returns[arm][where] = episode_returns(env, act, args.eval_episodes, EVAL_SEED)
            if not args.background:
                focal[arm][where] = episode_returns(env, act, args.eval_episodes, EVAL_SEED, background)
        env.close()
    result = {"game": args.game, "players": game.num_players, "returns": _lists(returns), **summary(returns),
              "training": training}
    if args.background:
        result["background"] = {"policy": args.background, "focal_players": args.focal, "focal_rule": FOCAL_RULE}
    else:
        result["focal"] = {"returns": _lists(focal), **summary(focal)}
    return result


def _lists(returns: dict[str, dict[str, np.ndarray]]) -> dict:
    return {arm: {where: r.tolist() for where, r in v.items()} for arm, v in returns.items()}


# --- results ---
def plot(result: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"real": "tab:green", "dream": "tab:blue"}
    for arm in TRAINED:
        tr = result["training"][arm]
        if tr["episodes"]:
            t, r = np.asarray(tr["episodes"], float).T
            ends, index = np.unique(t, return_inverse=True)  # worlds started together end together
            means = np.bincount(index, weights=r) / np.bincount(index)
            ax.plot(ends, means, color=colors[arm], alpha=0.5, label=f"{arm}-trained, in its own env")
        if tr["real_scores"]:
            t, m, se = np.asarray([(t, m, se or 0.0) for t, m, se in tr["real_scores"]], float).T
            ax.errorbar(t, m, yerr=se, color=colors[arm], marker="o", capsize=3, label=f"{arm}-trained, in the real game")
    rand = result["arms"]["random"]["real"]
    ax.axhline(rand["mean"], color="tab:gray", linestyle="--", label="random, in the real game")
    who = f"focal player among {result['background']['policy']} bots" if "background" in result else "player"
    ax.set_xlabel(f"PPO timesteps (one per {'focal ' if 'background' in result else ''}player per step)")
    ax.set_ylabel(f"return per {who} per episode ({result['meta']['episode']} steps)")
    ax.set_title(f"{result['game']}: trained in the dream vs in the real game")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _interval(v: list) -> str:
    if v[0] is None:
        return "undefined (real-trained = random)"
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" if v[1] is not None else f"{v[0]:.2f}"


def _mean_se(d: dict) -> str:
    return f"{d['mean']:+.2f} ± {d['se']:.2f}" if d["se"] is not None else f"{d['mean']:+.2f}"


def unequal_budgets(training: dict, tolerance: float = 0.05) -> bool:
    """Whether the arms' timesteps differ by more than `tolerance` of the larger: then the transfer ratio
    measures samples as well as the dream (a wall-clock cap, --max-minutes, stopped one arm early)."""
    steps = [training[arm]["timesteps"] for arm in TRAINED]
    return max(steps) - min(steps) > tolerance * max(steps)


def _rows(results: list[dict], scores: Callable[[dict], dict]) -> list[str]:
    """The table of the results' scores (`scores(result)`: the self-play or the focal summary)."""
    lines = ["| game | players | timesteps real / dream | random | real-trained | dream-trained | dream-trained in the dream "
             "| real > random | transfer ratio [95%] | exploitation gap [95%] |", "|---|" + "---|" * 9]
    for r in results:
        s, n = scores(r), r["players"]
        a = s["arms"]
        steps = " / ".join(f"{r['training'][arm]['timesteps']:,}" for arm in TRAINED)
        steps += " (unequal)" if unequal_budgets(r["training"]) else ""
        lines.append(f"| {r['game']} | {n} | {steps} | {_mean_se(a['random']['real'])} | "
                     f"{_mean_se(a['real']['real'])} | {_mean_se(a['dream']['real'])} | {_mean_se(a['dream']['dream'])} | "
                     f"{'yes' if s['real_beats_random'] else 'no'} | {_interval(s['transfer_ratio'])} | "
                     f"{_interval(s['exploitation_gap'])} |")
    return lines


def write_table(out_dir: Path, tag: str) -> Path:
    """rl_<tag>.md from every rl_<tag>_<game>.json in out_dir."""
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob(f"rl_{tag}_*.json"))]
    lines = [f"# Trained in the dream, scored in the real game ({tag})", ""]
    for r in results[:1]:
        m = r["meta"]
        who = "the focal players" if "background" in r else "all players"
        lines += [f"Machine: {m['device_name']}; {m['machine']['cores']} CPU cores; commit {m['commit']}, {m['machine']['date']}.  ",
                  f"PPO (SB3 CnnPolicy, one policy for {who}): {m['ppo']}; episodes of {m['episode']} "
                  f"steps; {m['eval_episodes']} evaluation episodes per arm and env, seeds no training episode used.", ""]
    self_play = [r for r in results if "background" not in r]
    if self_play:
        lines += _rows(self_play, lambda r: r)
    scenarios = [r for r in results if "background" in r]
    key = lambda r: tuple(r["background"][k] for k in ("policy", "focal_players", "focal_rule"))  # noqa: E731
    for policy, k, rule in dict.fromkeys(map(key, scenarios)):  # a table per background and number of focal players
        if lines[-1]:
            lines.append("")
        lines += [f"Focal among {policy} background players (Melting Pot's scenarios, in training and in scoring, in "
                  f"the real game and in the dream: in every world K = {k} focal player(s) act by the arm's policy, the "
                  f"others by `training.policies.{policy}`; the focal players are {rule}; the return: the focal "
                  f"players' mean per episode; random: random focal players among the same bots; timesteps count "
                  f"one per focal player per step):", ""]
        lines += _rows([r for r in scenarios if key(r) == (policy, k, rule)], lambda r: r)
    focal = [r for r in results if "focal" in r]
    if focal:
        lines += ["", "Focal player against random background players (Melting Pot's focal-vs-background protocol: "
                  "in each scored episode one player acts by the arm's policy and the others at random; the focal "
                  "player's return; random: a random focal player):", ""]
        lines += _rows(focal, lambda r: r["focal"])
    lines += ["", "Returns: mean per-player return per episode ± standard error. Transfer ratio = (dream-trained - random) / "
              "(real-trained - random), in the real game; exploitation gap = (dream-trained in the dream - in the real game) / "
              "(real-trained - random). Targets: transfer >= 0.8, gap <= 0.2. Timesteps count one per player per step "
              "(real steps = timesteps / players); (unequal): the arms' timesteps differ by more than 5%, so the ratio "
              "compares budgets too. Commands:", ""]
    for r in results:  # the training runs' commands where they differ from the scoring one
        lines += [f"- `{c}`" for c in dict.fromkeys(r["training"][arm].get("command", r["meta"]["command"]) for arm in TRAINED)
                  if c != r["meta"]["command"]]
        lines.append(f"- `{r['meta']['command']}`")
    lines += ["", "Training (time; the real-game score of each policy at the curve points, 8 episodes each):", ""]
    for r in results:
        t = r["training"]
        curve = "; ".join(f"{arm}-trained " + ", ".join(f"{m:+.2f} at {s:,}" for s, m, _ in t[arm]["real_scores"])
                          for arm in TRAINED if t[arm]["real_scores"])
        lines.append(f"- {r['game']}: {t['real']['seconds']:.0f} s real ({t['real']['timesteps_per_s']:.0f} timesteps/s, "
                     f"{t['real']['slots']} slots), {t['dream']['seconds']:.0f} s dream ({t['dream']['timesteps_per_s']:.0f}/s, "
                     f"{t['dream']['slots']} slots)" + ("; stopped at --max-minutes" if any(
                         t[arm].get("stopped_at_max_minutes") for arm in TRAINED) else "") + (f". {curve}" if curve else ""))
    path = out_dir / f"rl_{tag}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="actionparty benchmark rl", description=__doc__.split("\n\n")[0])
    p.add_argument("--game", help="the substrate, e.g. coins")
    p.add_argument("--report", action="store_true",
                   help="only redraw the plots and rl_<tag>.md from the rl_<tag>_*.json in --out-dir")
    p.add_argument("--timesteps", type=int, default=1_000_000, help="PPO budget per trained arm (one per player per step)")
    p.add_argument("--rollout", type=int, default=PPOSettings.rollout, help="PPO samples per update, in both arms")
    p.add_argument("--episode", type=int, default=200, help="steps per episode (training and scoring)")
    p.add_argument("--dream-worlds", type=int, default=64, help="dream worlds stepped together")
    p.add_argument("--real-worlds", type=int, default=8, help="real Melting Pots in subprocesses")
    p.add_argument("--eval-episodes", type=int, default=32, help="scored episodes per arm, in each env")
    p.add_argument("--curve-points", type=int, default=4, help="real-game scores of each policy during training")
    p.add_argument("--curve-episodes", type=int, default=8, help="episodes per curve point")
    p.add_argument("--checkpoint", default=None, help="the dream's checkpoint folder (default: the bundled one)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda: the dream and the PPO networks")
    p.add_argument("--no-cuda-graph", action="store_true", help="on a GPU, step the dream eagerly, not as a "
                                                                   "recorded CUDA graph (model/step_graph.py)")
    p.add_argument("--compile", action="store_true", help="the dream's layers through torch.compile "
                                                           "(WorldModel.compiled_layers; faster big batches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background", choices=BACKGROUNDS, default=None,
                   help="Melting Pot's scenarios: in training and scoring, --focal players per world act by the "
                        "policy, the others by this behaviour policy (training/policies.py)")
    p.add_argument("--focal", type=int, default=None, help="focal players per world with --background (default 1)")
    p.add_argument("--train", nargs="*", default=list(TRAINED), choices=TRAINED,
                   help="arms to train (default both; none: score the policies in --work)")
    p.add_argument("--max-minutes", type=float, default=float("inf"),
                   help="stop training an arm after this long (its timesteps reached are reported)")
    p.add_argument("--no-score", action="store_true", help="train only")
    p.add_argument("--work", default="out/rl", help="where the trained policies and their curves go")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--tag", default="local")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    out_dir = Path(args.out_dir)
    if args.report:
        for path in sorted(out_dir.glob(f"rl_{args.tag}_*.json")):
            plot(json.loads(path.read_text()), path.with_suffix(".png"))
        print(write_table(out_dir, args.tag).read_text())
        return 0
    if args.game is None:
        p.error("--game is required (or --report)")
    players = get_game(args.game).num_players  # a ValueError naming close matches, before anything runs
    for name in ("timesteps", "rollout", "episode", "dream_worlds", "real_worlds", "eval_episodes", "curve_episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.background is None and args.focal is not None:
        p.error("--focal needs --background (without it, every player acts by the policy)")
    args.focal = 1 if args.focal is None else args.focal
    if args.background is not None and not 1 <= args.focal < players:
        p.error(f"--focal must be in 1..{players - 1} ({args.game} has {players} players; at least one is background)")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(args.work) / args.game
    work.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for arm in args.train:
        train_arm(arm, args, work)
    if args.no_score:
        return 0
    result = score_arms(args, work)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result["meta"] = {"command": "python -m benchmarks.rl " + " ".join(args.argv),
                      "commit": git_commit(), "machine": machine(), "device_name": device, "episode": args.episode,
                      "eval_episodes": args.eval_episodes, "ppo": asdict(PPOSettings(rollout=args.rollout)), "checkpoint": args.checkpoint or "bundled"}
    stem = out_dir / f"rl_{args.tag}_{args.game}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, stem.with_suffix(".png"))
    print(write_table(out_dir, args.tag).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
