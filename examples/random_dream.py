"""Dream a Melting Pot game with random actions and write a GIF of it.

    python examples/random_dream.py                        # coins, the bundled checkpoint, GPU if any
    python examples/random_dream.py --game clean_up --steps 200 --gif out/clean_up.gif

The dream is a PettingZoo ParallelEnv with the real game's agents, spaces and infos: every frame
below is drawn by the world model from its own previous frame and the players' actions.
"""
import argparse

import actionparty_env
from actionparty_env.render import beside, save_gif, tile

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--game", default="coins")
p.add_argument("--steps", type=int, default=100)
p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the bundled one)")
p.add_argument("--gif", default="out/random_dream.gif")
args = p.parse_args()

env = actionparty_env.parallel_env(args.game, checkpoint=args.checkpoint, max_cycles=args.steps)
obs, infos = env.reset(seed=0)
frames, returns = [], dict.fromkeys(env.agents, 0.0)
while env.agents:  # every agent truncates together after max_cycles steps
    actions = {agent: env.action_space(agent).sample() for agent in env.agents}
    obs, rewards, terminations, truncations, infos = env.step(actions)
    frames.append(beside(env.state(), tile(list(obs.values()))))  # the global frame and every player's view
    for agent, r in rewards.items():
        returns[agent] += r

print(f"{args.game}: {len(frames)} dream steps on {env.dream.device}, {len(returns)} players")
for agent, info in infos.items():
    print(f"  {agent}: return {returns[agent]:+.2f}, ends at cell {info['cell']} facing {'NESW'[info['facing']]}"
          f"{'' if info['alive'] else ' (not alive)'}")
print("wrote", save_gif(frames, args.gif, scale=2))
