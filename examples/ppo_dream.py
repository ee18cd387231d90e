"""Train PPO only in the dream, then score the policy in the real Melting Pot beside random actions.

    python examples/ppo_dream.py --game coins --worlds 16 --timesteps 200000
    python examples/ppo_dream.py --game clean_up --background rl_mix --focal 2 --worlds 64 --timesteps 200000
    python examples/ppo_dream.py --timesteps 4096 --worlds 4 --eval-episodes 2   # a quick CPU smoke run

One policy drives every player (parameter sharing): DreamVecEnv exposes the B worlds x N players
as B*N SB3 env slots and steps all worlds in one world-model call. With `--background rl_mix` it
drives K focal players per world among `rl_mix` bots instead, as Melting Pot scores its scenarios
(benchmarks/scenario.py): the way to learn clean_up, where apples grow only while someone cleans
the river. The real env has the same observation and action spaces, so the trained policy runs
there unchanged (needs Melting Pot), scored on seeds no training episode uses.
"""
import argparse

from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from actionparty_env import DreamVecEnv, RealVecEnv
from benchmarks.rl import EVAL_SEED, episode_returns, policy_act, random_act, scenario
from benchmarks.scenario import BACKGROUNDS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="coins")
    p.add_argument("--worlds", type=int, default=16, help="dream worlds stepped together")
    p.add_argument("--timesteps", type=int, default=200_000, help="PPO timesteps (one per trained player per step)")
    p.add_argument("--episode", type=int, default=200, help="steps per episode, in the dream and in the real eval")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled one)")
    p.add_argument("--background", choices=BACKGROUNDS, default=None, help="train focal players among these bots")
    p.add_argument("--focal", type=int, default=1, help="focal players per world with --background")
    p.add_argument("--compile", action="store_true", help="the dream's layers through torch.compile (faster big "
                                                           "batches on a GPU; the first steps wait for the compiler)")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--out", default="out/ppo_dream")
    args = p.parse_args()

    # scenario(env, args): the env itself, or with --background its --focal slots per world among the bots
    dream = VecMonitor(scenario(DreamVecEnv(args.game, num_worlds=args.worlds, checkpoint=args.checkpoint,
                                            max_cycles=args.episode, channels_first=True, compile=args.compile), args))
    model = PPO("CnnPolicy", dream, n_steps=64, batch_size=256, n_epochs=4, learning_rate=2.5e-4, ent_coef=0.01,
                verbose=1, seed=0)
    model.learn(total_timesteps=args.timesteps)
    model.save(args.out)
    print(f"trained {model.num_timesteps} steps in the dream; saved {args.out}.zip")

    real = scenario(RealVecEnv(args.game, num_worlds=min(4, args.eval_episodes), max_cycles=args.episode,
                               channels_first=True), args)
    who = f"{args.focal} focal player(s) among {args.background} bots" if args.background else "every player"
    print(f"real {args.game}, {who}: mean return per player over {args.eval_episodes} episodes of {args.episode} steps:")
    arms = (("PPO trained in the dream", policy_act(model)), ("random actions", random_act(dream.action_space.n, 0)))
    for name, act in arms:
        print(f"  {name + ':':26s}{episode_returns(real, act, args.eval_episodes, EVAL_SEED).mean():+.2f}")
    real.close()


if __name__ == "__main__":  # RealVecEnv starts its worlds in spawned processes, which import this file
    main()
