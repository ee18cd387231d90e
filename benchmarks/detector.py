"""A player detector for Melting Pot frames, from pixels alone.

Built from real sprites: every 8x8 patch at a live player's cell in recorded real frames (ground
truth cells from the recorder) is a positive example of that player and facing; every patch at a
cell with no live player is a negative. Nothing here looks at the world model.

- Identity classes. Players that are ever drawn with an identical patch cannot be told apart from
  pixels (shared colours: the `*_in_the_matrix__repeated` pairs, role colours in the arenas, team
  colours in paintball, the behaviour colours of allelopathic_harvest); they form one class
  (union-find). Identity is visible in a substrate where every class has one player. Measured, not
  taken from the catalog, which misses the role-, team- and behaviour-coloured games.
- Templates per (class, facing): a patch plus a mask of the sprite's opaque pixels, first the pixels
  that differ from the same cell's background (seen at the nearest times the cell is free, before
  and after). Seen patches merge greedily (most frequent first) into the union of their sprite
  pixels where they agree, if they agree on at least MERGE_AGREEMENT of them (one sprite over two
  floors, or with and without a hat or a held item; not two colour variants) and the merged mask
  keeps MIN_PIXELS pixels and matches no negative (a free cell, another class or facing). Pixels
  seen to vary at a facing (overlays) leave every template of that facing where that stays safe.
- Palette transfer: every avatar is one sprite recoloured per player, so each class also gets the
  other classes' templates, recoloured by the colour map between the two classes at a facing both
  were seen at: a facing, hat or held item seen only on another player is still recognised.
- Overlays: (pixel, colour) pairs seen drawn over part of a player (where its patch differs from
  the most frequent view of its class and facing on at most half the sprite: territory's zap mark,
  held items, a neighbour's paintbrush, a highlight frame). Any template may take such a pixel for
  hidden rather than wrong, where no negative then comes within twice its tolerance; an overlay seen
  on one player and facing thus also uncovers every other.
- Detection: a cell shows (class k, facing f) when its patch matches a template of (k, f) on the
  template's mask, up to `allowed` wrong pixels (TOLERANCE of the mask, and less than half the
  distance to the nearest negative), or up to `overlay_allowed` wrong pixels besides those showing a
  known overlay (at most half the mask), taking the best template's label(s) only. Output per frame:
  `hits` bool [R, C, K, 4]. Patches are cached (dream frames reuse a small alphabet of patches).
- Players: `assign`/`track` turn hits into each player's (cell, facing, found). A one-player class
  is found when exactly one cell shows it; in a shared class identity follows continuity and the
  actions (see `assign`), so a ghost or a lost player there still shows as a count mismatch.

`python -m benchmarks.detector_accuracy --data DATA` measures the detector on held-out real episodes of
every substrate (templates from the train split) and the rule checker (benchmarks/rules.py) on the same
real transitions: benchmarks/results/fidelity_detector_cpu.md.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from actionparty_env.grid import CELL
from actionparty_env.model.codebook import frame_to_cells, unique_rows

PIXELS = CELL * CELL
TOLERANCE = 0.15  # a match may differ from a template on this share of its opaque pixels (overlays)
MIN_PIXELS = 12  # a merged template keeps at least this many opaque pixels (a sprite covers 30-60)
MERGE_AGREEMENT = 0.5  # two views merge into one template where they agree on this share of their pixels
NONE = -1        # label of a patch with no player on it


@dataclass
class Template:
    values: np.ndarray  # uint8 [64, 3]
    mask: np.ndarray    # bool [64], the opaque pixels compared
    allowed: int = 0    # opaque pixels a match may get wrong (an overlay over part of the sprite)
    # Wrong pixels a match may have besides those showing a known overlay colour at their place (a
    # mark, a held item, a neighbour's tool, a beam's edge); -1: overlays are not tolerated (unsafe).
    overlay_allowed: int = -1


def _pixel_colour_codes(patches: np.ndarray) -> np.ndarray:
    """uint8 [..., 64, 3] -> int64 [..., 64]: pixel index and colour in one number."""
    colour = (patches[..., 0].astype(np.int64) << 16) | (patches[..., 1].astype(np.int64) << 8) | patches[..., 2]
    return np.arange(PIXELS) << 24 | colour


def _uncovered_differ(values: np.ndarray, mask: np.ndarray, patches: np.ndarray, overlays: np.ndarray) -> np.ndarray:
    """Like `_differ`, not counting pixels that show a known overlay colour at their place: int [P]."""
    covered = np.isin(_pixel_colour_codes(patches), overlays)
    return ((patches != values).any(-1) & mask & ~covered).sum(-1)


def _patch_grid(frame: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [R, C, 64, 3]."""
    h, w, _ = frame.shape
    if frame.ndim != 3 or h % CELL or w % CELL or frame.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8 [rows*8, cols*8, 3]; got {frame.dtype} {frame.shape}")
    return frame_to_cells(frame).reshape(h // CELL, w // CELL, PIXELS, 3)


def _differ(values: np.ndarray, mask: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """How many of the template's opaque pixels (`values` on `mask`) each uint8 [P, 64, 3] patch gets
    wrong: int [P]."""
    return ((patches != values).any(-1) & mask).sum(-1)


def _min_cost_matching(cost: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, column) matching min(rows, columns) rows of a small cost matrix one to one: greedy
    cheapest first, then pairwise exchanges while one lowers the total (two members that both fit a
    detection best, e.g. a blocked mover and the player that blocks it, get the jointly best one)."""
    m, d = cost.shape
    col = np.full(m, -1)
    used = np.zeros(d, bool)
    for flat in np.argsort(cost, axis=None, kind="stable"):
        a, b = divmod(int(flat), d)
        if col[a] < 0 and not used[b]:
            col[a], used[b] = b, True
    improved = True
    while improved:
        improved = False
        for a in range(m):
            for b in range(a + 1, m):
                ca, cb = col[a], col[b]
                now = (cost[a, ca] if ca >= 0 else 0) + (cost[b, cb] if cb >= 0 else 0)
                if ca >= 0 and cb >= 0 and cost[a, cb] + cost[b, ca] < now - 1e-9:
                    col[a], col[b] = cb, ca
                    improved = True
    return [(a, int(col[a])) for a in range(m) if col[a] >= 0]


def _colour_map(target: Template, source: Template) -> dict[bytes, bytes] | None:
    """The colours of `source` -> those of `target` pixel by pixel where both are opaque, if that is a
    one-to-one map (two recolourings of one sprite), else None."""
    both = np.flatnonzero(target.mask & source.mask)
    pairs = {(source.values[x].tobytes(), target.values[x].tobytes()) for x in both}
    forward = dict(pairs)
    if len(forward) != len(pairs) or len(set(forward.values())) != len(forward) or len(both) < MIN_PIXELS:
        return None
    return forward


def _recoloured(template: Template, recolour: dict[bytes, bytes]) -> Template:
    """`template` with its colours mapped; pixels of colours the map lacks leave the mask."""
    values, mask = template.values.copy(), template.mask.copy()
    for x in np.flatnonzero(mask):
        new = recolour.get(values[x].tobytes())
        if new is None:
            mask[x] = False
        else:
            values[x] = np.frombuffer(new, np.uint8)
    return Template(values, mask)


def _learn_overlays(positives: dict) -> np.ndarray:
    """The overlays seen drawn over players in the fit frames: int64 codes (`_pixel_colour_codes`) of
    (pixel, colour) where a player's patch differs from the most frequent view of its (class, facing),
    on that view's sprite pixels, if on at most half of them (a mark, a held item, a neighbour's tool
    over part of the sprite; a patch wrong on more is another floor or a ground-truth glitch)."""
    codes = []
    for items in positives.values():
        _, main, sprite = max(items, key=lambda x: (x[0], x[1]))
        reference = np.frombuffer(main, np.uint8).reshape(PIXELS, 3)
        patches = np.frombuffer(b"".join(p for _, p, _ in items), np.uint8).reshape(-1, PIXELS, 3)
        wrong = (patches != reference).any(-1) & sprite                   # [P, 64]
        partial = 2 * wrong.sum(-1) <= sprite.sum()
        codes.append(_pixel_colour_codes(patches)[wrong & partial[:, None]])
    return np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)


class PlayerDetector:
    """Finds every player (identity class and facing) in frames of one substrate.

    `PlayerDetector.fit(frames, cells, facing, alive)` with arrays of one or more episodes
    (lists, one entry per episode: frames [T+1,H,W,3], cells [T+1,N,2], facing [T+1,N], alive [T+1,N]).
    """

    def __init__(self, num_players: int, classes: np.ndarray, templates: dict[tuple[int, int], list[Template]],
                 overlays: np.ndarray | None = None):
        self.num_players = int(num_players)
        self.classes = np.asarray(classes, dtype=np.int64)          # [N] class of each player slot
        self.num_classes = int(self.classes.max()) + 1
        self.templates = templates                                  # (class, facing) -> templates
        self.members = [np.flatnonzero(self.classes == k) for k in range(self.num_classes)]
        labels, values, masks = [], [], []
        for (k, f), ts in sorted(templates.items()):
            for t in ts:
                labels.append(k * 4 + f)
                values.append(t.values)
                masks.append(t.mask)
        self._labels = np.array(labels, np.int64)
        self._values = np.array(values, np.uint8).reshape(-1, PIXELS, 3)
        self._masks = np.array(masks, bool).reshape(-1, PIXELS)
        self._allowed = np.array([t.allowed for _, ts in sorted(templates.items()) for t in ts], np.int64)
        self._overlay_allowed = np.array([t.overlay_allowed for _, ts in sorted(templates.items()) for t in ts],
                                         np.int64)
        self.overlays = np.zeros(0, np.int64) if overlays is None else np.asarray(overlays, np.int64)
        self._cache: dict[bytes, np.ndarray] = {}

    @property
    def identity_visible(self) -> bool:
        """True where every player has a class of its own (pixels tell all players apart)."""
        return self.num_classes == self.num_players

    @property
    def num_templates(self) -> int:
        return len(self._labels)

    # ------------------------------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, frames, cells, facing, alive) -> "PlayerDetector":
        """Build from real episodes with ground truth (lists of per-episode arrays, see class doc)."""
        if not (len(frames) == len(cells) == len(facing) == len(alive)) or len(frames) == 0:
            raise ValueError("fit needs the same number (>= 1) of frames, cells, facing and alive arrays")
        n = np.asarray(cells[0]).shape[1]
        # patch -> Counter of labels: (player, facing) or NONE; (patch, player, facing) -> sprite masks seen
        counts: dict[bytes, Counter] = defaultdict(Counter)
        sprite_masks: dict[tuple[bytes, int, int], np.ndarray] = {}
        for fr, ce, fa, al in zip(frames, cells, facing, alive):
            fr, ce, fa, al = np.asarray(fr), np.asarray(ce), np.asarray(fa), np.asarray(al, bool)
            if fr.ndim != 4 or ce.shape != (len(fr), n, 2) or fa.shape != (len(fr), n) or al.shape != (len(fr), n):
                raise ValueError(f"episode arrays disagree: frames {fr.shape}, cells {ce.shape}, facing {fa.shape}, "
                                 f"alive {al.shape} (expected T+1 frames and N={n} players)")
            grids = np.stack([_patch_grid(f) for f in fr])  # [T, R, C, 64, 3]
            steps, rows, cols = grids.shape[:3]
            r, c = ce[..., 0].astype(np.int64), ce[..., 1].astype(np.int64)
            live = al & (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
            occupied = np.zeros((steps, rows, cols), np.int64)
            tt = np.broadcast_to(np.arange(steps)[:, None], live.shape)
            np.add.at(occupied, (tt[live], r[live], c[live]), 1)
            free_t = [np.flatnonzero(occupied[:, y, x] == 0) for y in range(rows) for x in range(cols)]
            for t in range(steps):
                # Patches of free cells are negatives; a cell two players claim is skipped.
                flat = grids[t].reshape(rows * cols, -1)
                first, inverse = unique_rows(flat)
                free = np.bincount(inverse, weights=(occupied[t].reshape(-1) == 0), minlength=len(first))
                for j in np.flatnonzero(free):
                    counts[flat[first[j]].tobytes()][NONE] += int(free[j])
                for i in np.flatnonzero(live[t]):
                    y, x = r[t, i], c[t, i]
                    if occupied[t, y, x] != 1:
                        continue
                    patch, lab = grids[t, y, x], (int(i), int(fa[t, i]) % 4)
                    counts[patch.tobytes()][lab] += 1
                    # The sprite's opaque pixels: where the patch differs from the same cell's
                    # background, seen at the nearest free time before and after (both where both
                    # exist, so a background that changed under the player is not taken for sprite).
                    key = (patch.tobytes(), *lab)
                    ts = free_t[y * cols + x]
                    seen = np.ones(PIXELS, bool)
                    for side in (ts[ts < t], ts[ts > t]):
                        if len(side):
                            bg = grids[side[np.argmin(np.abs(side - t))], y, x]
                            seen &= (patch != bg).any(-1)
                    sprite_masks[key] = sprite_masks.get(key, seen) & seen
        return cls._from_counts(n, counts, sprite_masks)

    @classmethod
    def _from_counts(cls, n: int, counts: dict[bytes, Counter], sprite_masks: dict) -> "PlayerDetector":
        # A patch's label is its majority label: a rare disagreement is a ground-truth glitch (a
        # player's reported cell off its sprite for a frame), not a second meaning of the patch.
        label = {p: c.most_common(1)[0][0] for p, c in counts.items()}
        weight = {p: counts[p][label[p]] for p in counts}
        # Identity classes: players that share a patch (at any facing) are one class.
        parent = list(range(n))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for p, c in counts.items():
            players = {lab[0] for lab, k in c.items() if lab != NONE and k >= 0.1 * weight[p]}
            for q in players:
                parent[root(q)] = root(min(players))
        roots = sorted({root(i) for i in range(n)})
        classes = np.array([roots.index(root(i)) for i in range(n)])
        # Positives per (class, facing), most frequent first; everything else is a negative for it.
        pos: dict[tuple[int, int], list[tuple[int, bytes, np.ndarray]]] = defaultdict(list)
        for p, lab in label.items():
            if lab != NONE:
                pos[(int(classes[lab[0]]), lab[1])].append((weight[p], p, sprite_masks[(p, *lab)]))
        all_patches = np.frombuffer(b"".join(label), np.uint8).reshape(-1, PIXELS, 3)
        all_labels = [NONE if lab == NONE else (int(classes[lab[0]]), lab[1]) for lab in label.values()]
        templates, varying = {}, np.zeros((4, PIXELS), bool)
        for key, items in pos.items():
            negatives = all_patches[[lab != key for lab in all_labels]]
            safe = lambda v, m: m.sum() >= MIN_PIXELS and _differ(v, m, negatives).min(initial=PIXELS) > 0  # noqa: E731
            ts: list[Template] = []
            for _, p, sprite in sorted(items, key=lambda x: (-x[0], x[1])):
                q = np.frombuffer(p, np.uint8).reshape(PIXELS, 3)
                if any(_differ(t.values, t.mask, q[None])[0] == 0 for t in ts):
                    continue
                for t in ts:
                    # Merge two views of one sprite (over other floors, with or without an overlay such
                    # as a hat or a held item): the union of their sprite pixels where they agree. Not
                    # two colour variants of a sprite: those agree on less than half their pixels.
                    both = t.mask | sprite
                    mask = both & (q == t.values).all(-1)
                    if mask.sum() >= MERGE_AGREEMENT * both.sum() and safe(t.values, mask):
                        varying[key[1]] |= both & ~mask
                        t.mask = mask
                        break
                else:
                    ts.append(Template(q.copy(), sprite.copy() if safe(q, sprite) else np.ones(PIXELS, bool)))
            templates[key] = (ts, negatives)
        # Views never seen for a class (a facing, or a facing with a hat or a held item): every avatar
        # is one sprite recoloured per player (Melting Pot's palettes), so each class also borrows the
        # other classes' templates of each facing, recoloured by the colour map between the two classes
        # at a facing both were seen at (where that map is one to one; colours it lacks leave the mask).
        # A borrowed template is kept where it matches no negative of its (class, facing).
        own = {key: list(ts) for key, (ts, _) in templates.items()}
        for k in range(len(roots)):
            for k2 in range(len(roots)):
                shared = [g for g in range(4) if (k, g) in own and (k2, g) in own]
                recolour = k2 != k and shared and _colour_map(own[(k, shared[0])][0], own[(k2, shared[0])][0])
                for f in range(4) if recolour else ():
                    if (k, f) not in templates:
                        templates[(k, f)] = ([], all_patches)
                    ts, negatives = templates[(k, f)]
                    for donor in own.get((k2, f), []):
                        t = _recoloured(donor, recolour)
                        if t.mask.sum() >= MIN_PIXELS and _differ(t.values, t.mask, negatives).min(initial=PIXELS) > 0 \
                                and not any(_differ(u.values, u.mask & t.mask, t.values[None])[0] == 0
                                            and (u.mask == t.mask).all() for u in ts):
                            ts.append(t)
        templates = {key: v for key, v in templates.items() if v[0]}
        # Overlays sit at fixed places of a sprite: where any sprite of a facing was seen to vary,
        # no template of that facing relies on it (if what remains is still safe and at least half).
        # Then each template tolerates up to TOLERANCE of its pixels wrong, but less than half the
        # distance to the nearest negative (another facing, another class, or no player at all).
        for key, (ts, negatives) in templates.items():
            for t in ts:
                mask = t.mask & ~varying[key[1]]
                if mask.sum() >= max(MIN_PIXELS, MERGE_AGREEMENT * t.mask.sum()) and \
                        _differ(t.values, mask, negatives).min(initial=PIXELS) > 0:
                    t.mask = mask
                nearest = int(_differ(t.values, t.mask, negatives).min(initial=PIXELS))
                t.allowed = min(int(TOLERANCE * t.mask.sum()), (nearest - 1) // 2)
        overlays = _learn_overlays(pos)
        # Overlay colours are tolerated by a template only where that keeps every negative (another
        # facing, another class, a free cell) at least twice its tolerance away.
        for key, (ts, negatives) in templates.items():
            for t in ts:
                nearest = int(_uncovered_differ(t.values, t.mask, negatives, overlays).min(initial=PIXELS))
                if nearest > 0:
                    t.overlay_allowed = min(int(TOLERANCE * t.mask.sum()), (nearest - 1) // 2)
        templates = {key: ts for key, (ts, _) in templates.items()}
        return cls(n, classes, templates, overlays)

    # ------------------------------------------------------------------------------------- detect
    def detect(self, frame: np.ndarray) -> np.ndarray:
        """bool [R, C, K, 4]: the cell shows a player of class k facing f."""
        grid = _patch_grid(np.asarray(frame))
        rows, cols = grid.shape[:2]
        flat = grid.reshape(rows * cols, -1)
        first, inverse = unique_rows(flat)
        out = np.empty((len(first), self.num_classes * 4), bool)
        todo = []
        for j, idx in enumerate(first):
            hit = self._cache.get(flat[idx].tobytes())
            if hit is None:
                todo.append(j)
            else:
                out[j] = hit
        if todo:
            hit = self._match(flat[first[todo]].reshape(-1, PIXELS, 3))
            out[todo] = hit
            for j, h in zip(todo, hit):
                self._cache[flat[first[j]].tobytes()] = h
        return out[inverse].reshape(rows, cols, self.num_classes, 4)

    def _match(self, patches: np.ndarray) -> np.ndarray:
        """uint8 [P, 64, 3] -> bool [P, K*4]: the best-matching (class, facing) labels of each patch.

        A template matches where at most TOLERANCE of its mask's pixels differ; a patch takes the
        label(s) of its best template (lowest share of differing pixels), so near-identical facings
        do not both match."""
        out = np.zeros((len(patches), self.num_classes * 4), bool)
        if not len(self._labels):
            return out
        sizes = self._masks.sum(1)
        for s in range(0, len(patches), 64):  # chunks: [64, templates, 64 px] at a time
            p = patches[s:s + 64]
            wrong = (p[:, None] != self._values[None]).any(-1) & self._masks[None]  # [P, M, 64]
            differ = wrong.sum(-1)
            covered = np.isin(_pixel_colour_codes(p), self.overlays)                # [P, 64]
            uncovered = (wrong & ~covered[:, None]).sum(-1)
            # Through an overlay: its colours hide at most half the sprite; the rest as for a plain match.
            through_overlay = (uncovered <= self._overlay_allowed) & (2 * (differ - uncovered) <= sizes)
            share = np.where(through_overlay, uncovered, np.where(differ <= self._allowed, differ, np.inf)) / sizes
            best = share.min(1, keepdims=True)
            ok = np.isfinite(best) & (share == best)
            rows, cols = np.nonzero(ok)
            out[s + rows, self._labels[cols]] = True
        return out

    def detect_many(self, frames: np.ndarray) -> np.ndarray:
        """[T,H,W,3] -> bool [T, R, C, K, 4]."""
        return np.stack([self.detect(f) for f in frames])

    def assign(self, hits: np.ndarray, prev_cells: np.ndarray | None = None,
               expected: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each player's detected state in one frame: (cells [N,2], facing [N], found [N] bool).

        A one-player class: found when exactly one cell shows the class. A shared class (pixels cannot
        tell its members apart): its detections go to its members cheapest first, each detection to
        one member, members left over not found; the cost is the (Manhattan) distance from the member's
        `prev_cells` [N,2], or, with `expected` (cells [N,2], facing [N] that the members' actions lead
        to), from the expected cell (from the previous cell + 0.5 where that is nearer: a blocked move),
        + 1 where the detection does not show the expected facing (only a turn changes a facing).
        That is the reading of the pixels most favourable to the run scored, as identity is not
        visible there. Where a cell matches several facings, the expected facing (if among them) or the
        lowest is taken. Without `prev_cells`, shared classes are not assigned."""
        n = self.num_players
        cells = np.full((n, 2), -1, np.int64)
        facing = np.full(n, -1, np.int64)
        found = np.zeros(n, bool)
        shown = hits.any(-1)  # [R, C, K]

        def pick(i: int, cell: np.ndarray, k: int) -> None:
            cells[i], found[i] = cell, True
            options = hits[cell[0], cell[1], k]
            want = -1 if expected is None else int(expected[1][i]) % 4
            facing[i] = want if want >= 0 and options[want] else int(np.argmax(options))

        for k, members in enumerate(self.members):
            where = np.argwhere(shown[:, :, k])
            if len(members) == 1:
                if len(where) == 1:
                    pick(members[0], where[0], k)
                continue
            if prev_cells is None or len(where) == 0:
                continue
            prev = np.asarray(prev_cells)[members]
            cost = np.abs(prev[:, None, :] - where[None]).sum(-1).astype(float)  # [m, D]
            if expected is not None:
                exp, exp_f = np.asarray(expected[0])[members], np.asarray(expected[1])[members] % 4
                shows = hits[where[:, 0], where[:, 1], k]                          # [D, 4] facings seen
                wrong_facing = 1.0 * ~shows[:, exp_f].T                             # [m, D]
                cost = np.minimum(np.abs(exp[:, None, :] - where[None]).sum(-1), cost + 0.5) + wrong_facing
            for a, b in _min_cost_matching(cost):
                pick(members[a], where[b], k)
        return cells, facing, found

    def track(self, hits: np.ndarray, start_cells: np.ndarray, start_facing: np.ndarray | None = None,
              predict=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Players' detected states over a sequence: hits [T, R, C, K, 4], start_cells [N,2] (where
        the players really start) -> cells [T,N,2], facing [T,N], found [T,N]. A shared class follows
        each member from its last found cell; `predict(t, cells, facing) -> (cells, facing)` (what the
        actions taken at frame t-1 lead to) refines that (see `assign`)."""
        prev = np.asarray(start_cells, np.int64).copy()
        prev_f = np.zeros(self.num_players, np.int64) if start_facing is None else np.asarray(start_facing, np.int64)
        cells, facing, found = [], [], []
        for t, h in enumerate(hits):
            expected = predict(t, prev, prev_f) if (predict is not None and t > 0) else None
            c, f, ok = self.assign(h, prev, expected)
            prev = np.where(ok[:, None], c, prev)
            prev_f = np.where(ok, f, prev_f)
            cells.append(c)
            facing.append(f)
            found.append(ok)
        return np.stack(cells), np.stack(facing), np.stack(found)
