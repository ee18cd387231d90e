"""Train PPO only in the dream, then score the policy in the real Melting Pot beside random actions.

    python examples/ppo_dream.py --game coins --worlds 16 --timesteps 200000
    python examples/ppo_dream.py --timesteps 4096 --worlds 4 --eval-episodes 2   # a quick CPU smoke run

One policy drives every player (parameter sharing): DreamVecEnv exposes the B worlds x N players
as B*N SB3 env slots and steps all worlds in one world-model call. The real env has the same
observation and action spaces, so the trained policy runs there unchanged (needs Melting Pot).
"""
import argparse

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from actionparty_env import DreamVecEnv, real_parallel_env

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--game", default="coins")
p.add_argument("--worlds", type=int, default=16, help="dream worlds stepped together")
p.add_argument("--timesteps", type=int, default=200_000, help="PPO timesteps (one per player per step)")
p.add_argument("--episode", type=int, default=200, help="steps per episode, in the dream and in the real eval")
p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled one)")
p.add_argument("--eval-episodes", type=int, default=5)
p.add_argument("--out", default="out/ppo_dream")
args = p.parse_args()

dream = VecMonitor(DreamVecEnv(args.game, num_worlds=args.worlds, checkpoint=args.checkpoint,
                               max_cycles=args.episode, channels_first=True))
model = PPO("CnnPolicy", dream, n_steps=64, batch_size=256, n_epochs=4, learning_rate=2.5e-4, ent_coef=0.01,
            verbose=1, seed=0)
model.learn(total_timesteps=args.timesteps)
model.save(args.out)
print(f"trained {model.num_timesteps} steps in the dream; saved {args.out}.zip")


def real_return(act) -> float:
    """Mean per-player return over real episodes; `act(obs [N,H,W,3]) -> actions [N]`."""
    env, totals = real_parallel_env(args.game, max_cycles=args.episode), []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=episode)
        total = 0.0
        while env.agents:
            batch = np.stack([obs[a] for a in env.agents])
            obs, rewards, *_ = env.step(dict(zip(env.agents, map(int, act(batch)))))
            total += sum(rewards.values())
        totals.append(total / len(env.possible_agents))
    return float(np.mean(totals))


rng = np.random.default_rng(0)
n_actions = dream.action_space.n
print(f"real {args.game}, mean return per player over {args.eval_episodes} episodes of {args.episode} steps:")
print(f"  PPO trained in the dream: {real_return(lambda o: model.predict(o.transpose(0, 3, 1, 2))[0]):+.2f}")
print(f"  random actions:           {real_return(lambda o: rng.integers(n_actions, size=len(o))):+.2f}")
