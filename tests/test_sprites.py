"""Sprite-consistent drawing (actionparty_env/model/sprites.py): the constraint on hand-made logits, in the
sampler with a tiny model, and the table built from real recorded episodes (training/artefacts.py)."""
import numpy as np
import torch

from actionparty_env.grid import PlayerStates
from actionparty_env.model.checkpoint import load_world_model, save_checkpoint
from actionparty_env.model.sampler import DreamSimulator
from actionparty_env.model.sprites import SpriteTable, constrain_logits, load_sprite_tables, restrict_to_start_appearance
from training.artefacts import appearance_groups, build_sprite_tables
from tests.conftest import TINY_VOCAB as V, tiny_model

R, C = 2, 3  # a 2 x 3 map: cells 0..5
N = 3  # players in the sampler test
# Codes 0..2 are floors; 3 = player 0 facing north, 4 = player 1 facing north, 5 = player 0 facing east.
IS_PLAYER = torch.tensor([False, False, False, True, True, True])
OWNED = torch.zeros(2, 4, 6, dtype=torch.bool)
OWNED[0, 0, 3] = OWNED[1, 0, 4] = OWNED[0, 1, 5] = True


def pick(logits, cells, facing, live):
    out = constrain_logits(logits[None], IS_PLAYER, OWNED[None], torch.tensor([cells]), torch.tensor([facing]),
                           torch.tensor([live]), C)
    return out[0].argmax(-1).tolist()


def test_no_player_sprite_where_no_player_stands():
    logits = torch.zeros(R * C, 6)
    logits[:, 1] = 1.0
    logits[5, 3] = 9.0  # a ghost of player 0 on cell 5, where nobody stands
    drawn = pick(logits, [[0, 0], [0, 1]], [0, 0], [True, True])
    assert drawn[5] == 1


def test_each_live_player_drawn_as_itself_at_its_cell_and_facing():
    logits = torch.zeros(R * C, 6)
    logits[0, 4] = 9.0  # player 1's sprite on player 0's cell (a swapped identity)
    logits[0, 3] = 1.0
    logits[1, 2] = 9.0  # a floor where player 1 stands (a lost player)
    logits[1, 4] = 1.0
    drawn = pick(logits, [[0, 0], [0, 1]], [0, 0], [True, True])
    assert drawn[:2] == [3, 4]
    drawn = pick(logits, [[0, 0], [0, 1]], [1, 0], [True, True])  # player 0 now faces east
    assert drawn[0] == 5


def test_dead_players_and_unknown_sprites_are_left_to_the_model():
    logits = torch.zeros(R * C, 6)
    logits[0, 4] = 9.0  # where dead player 0 lies: no player, so no player code
    logits[4, 2] = 9.0  # player 1 faces south, a sprite the table never saw: the model's pick stays
    drawn = pick(logits, [[0, 0], [1, 1]], [0, 2], [False, True])
    assert drawn[0] != 4 and drawn[4] == 2


def test_appearance_groups_keep_a_player_in_its_start_colours():
    # Two episodes of a game that draws colours per build: slot 0 red (codes 3, 5) then blue (4).
    groups = appearance_groups([3, 4, 5], [{3, 5}, {4}, {4}, {3, 5}])
    assert groups[0] == groups[2] != groups[1]
    owned = OWNED.clone()
    owned[:, :, 3:] = True  # either slot may show any of the three codes
    start = torch.tensor([[3, 4], [4, -1]])  # world 0: slot 0 starts red, slot 1 blue; world 1: slot 0 blue
    group_v = torch.tensor([-1, -1, -1, *groups.tolist()])
    narrowed = restrict_to_start_appearance(owned, group_v, start)
    assert narrowed[0, 0, 0].tolist() == [False, False, False, True, False, True]
    assert narrowed[0, 1, 0].tolist() == [False, False, False, False, True, False]
    assert narrowed[1, 0, 0].tolist() == [False, False, False, False, True, False]
    assert not narrowed[1, 1].any()  # no known start sprite: its cell is left to the model


def test_sampler_draws_players_only_at_their_predicted_cells():
    model = tiny_model()
    codes = np.arange(V - 4, V, dtype=np.int64)  # the last four codes only ever show players
    owners = np.zeros((4, model.cfg.max_players, 4), bool)
    for k in range(4):
        owners[k, :N, :] = True
    model.sprite_tables = {"game_a": SpriteTable(codes, owners, np.zeros(4, np.int64))}
    frames = model.codebook().decode(torch.randint(0, V - 4, (2, 4, 5)))
    cells = torch.tensor([[[0, 0], [1, 1], [2, 2]]] * 2)
    sim = DreamSimulator(model, "game_a", N, num_worlds=2)
    sim.reset(frames, PlayerStates(cells, torch.zeros(2, N), torch.ones(2, N, dtype=torch.bool)))
    free = DreamSimulator(model, "game_a", N, num_worlds=2, consistent_sprites=False)
    free.reset(frames, PlayerStates(cells, torch.zeros(2, N), torch.ones(2, N, dtype=torch.bool)))
    differ = False
    for s in range(6):
        actions = torch.randint(0, 7, (2, N), generator=torch.Generator().manual_seed(s))
        out = sim.step(actions)
        drawn = sim.codes.view(2, -1) >= V - 4
        expected = torch.zeros_like(drawn)
        for b in range(2):
            for i in range(N):
                if out.alive[b, i]:
                    expected[b, out.cells[b, i, 0] * 5 + out.cells[b, i, 1]] = True
        assert torch.equal(drawn, expected)
        differ |= not torch.equal(free.step(actions).frames, out.frames)
    assert differ, "the constraint never changed a frame of a random model"


def test_the_sprite_rule_is_a_logits_hook_and_a_rule_of_ones_own_is_applied_after_it():
    model = tiny_model()
    owners = np.zeros((4, model.cfg.max_players, 4), bool)
    owners[:, :N, :] = True
    model.sprite_tables = {"game_a": SpriteTable(np.arange(V - 4, V, dtype=np.int64), owners, np.zeros(4, np.int64))}
    sim = DreamSimulator(model, "game_a", N, num_worlds=2)
    assert sim.logits_hooks == [sim.sprite_rule]
    assert DreamSimulator(model, "game_a", N, num_worlds=2, consistent_sprites=False).logits_hooks == []
    seen = []

    def no_code_zero(logits, cells, facing, drawn):  # a rule of one's own: never draw code 0
        seen.append(tuple(logits.shape))
        return logits.masked_fill(torch.arange(logits.shape[-1]) == 0, float("-inf"))

    sim.logits_hooks.append(no_code_zero)
    frames = model.codebook().decode(torch.randint(0, V - 4, (2, 4, 5)))
    sim.reset(frames, PlayerStates(torch.tensor([[[0, 0], [1, 1], [2, 2]]] * 2), torch.zeros(2, N),
                                   torch.ones(2, N, dtype=torch.bool)))
    for s in range(4):
        sim.step(torch.randint(0, 7, (2, N), generator=torch.Generator().manual_seed(s)))
        assert not (sim.codes == 0).any()
    assert seen and seen[0][:2] == (2, 4 * 5)  # [B, R*C, V] per sampling pass


def test_table_from_real_episodes_and_checkpoint_roundtrip(tmp_path):
    from training.store import list_episodes, read_episode
    from training.record import RecordConfig, record

    data = str(tmp_path / "data")
    record(RecordConfig(data, ("commons_harvest__open",), 1, steps=30, workers=1, seed=5))
    ep = read_episode(data, list_episodes(data)[0])
    model = load_world_model(None)
    tables = build_sprite_tables(model, data)
    table = tables["commons_harvest__open"]
    book = model.codebook()
    # Every live player's code at its cell is a player code owned by that slot and facing (7 players
    # with their own colours: one owner each), and no player code lies on a cell without a player.
    for t in (0, 15, 30):
        codes = book.encode(ep.frames[t])
        occupied = np.zeros(codes.shape, bool)
        for i in np.flatnonzero(ep.alive[t]):
            r, c = ep.cells[t, i]
            occupied[r, c] = True
            k = np.flatnonzero(table.codes == codes[r, c])
            assert len(k) == 1 and table.owners[k[0], i, ep.facing[t, i]]
            assert table.owners[k[0]].sum(axis=1).astype(bool).sum() == 1
        assert not np.isin(codes[~occupied], table.codes).any()
    model.sprite_tables = tables
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_sprite_tables(tmp_path / "ck")
    assert np.array_equal(loaded["commons_harvest__open"].owners, table.owners)
    assert load_world_model(tmp_path / "ck").sprite_tables.keys() == tables.keys()


def test_bundled_checkpoint_has_a_table_for_every_substrate():
    model = load_world_model(None)
    assert sorted(model.sprite_tables) == sorted(model.games)
    assert all(len(t.codes) > 0 for t in model.sprite_tables.values())


def test_the_env_switch_changes_the_frames_and_keeps_players_in_their_start_appearance():
    """The bundled checkpoint on coins (players' colours drawn per build), the same seed and actions with
    the sprite constraint on and off: on, every live player is drawn at its predicted cell in the
    appearance group of its start sprite, and nowhere else; off, the frames differ (measured: a player
    redrawn in another colour group from the first step)."""
    from actionparty_env.env import parallel_env
    from actionparty_env.model.checkpoint import DEFAULT_CHECKPOINT

    table = load_sprite_tables(DEFAULT_CHECKPOINT)["coins"]
    book = load_world_model(None).codebook()
    group = dict(zip(table.codes.tolist(), table.groups.tolist()))

    def run(consistent: bool) -> list[tuple[np.ndarray, dict]]:
        env = parallel_env("coins", device="cpu", consistent_sprites=consistent)
        _, infos = env.reset(seed=0)
        out, rng = [(env.state(), infos)], np.random.default_rng(0)
        for _ in range(3):
            *_, infos = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
            out.append((env.state(), infos))
        return out

    on, off = run(True), run(False)
    start_codes = book.encode(on[0][0])
    start_group = {a: group.get(int(start_codes[i["cell"]])) for a, i in on[0][1].items()}
    assert all(g is not None for g in start_group.values())
    for frame, infos in on[1:]:
        codes = book.encode(frame)
        drawn = {tuple(map(int, rc)) for rc in np.argwhere(np.isin(codes, table.codes))}
        live = {a: i["cell"] for a, i in infos.items() if i["alive"]}
        assert drawn == set(live.values())  # a player sprite exactly where a live player is predicted
        assert all(group[int(codes[cell])] == start_group[a] for a, cell in live.items())
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(on[1:], off[1:]))
