"""Procedural houses: a grid of typed rooms, doors between them, and coloured furniture.

A house is a rectangle cut into a grid of rooms (column widths and row depths drawn per
house), so walls are axis-aligned segments and line-of-sight tests stay exact and cheap.
Doors are a random spanning tree over neighbouring rooms plus a few extra doors (loops make
shortest paths non-trivial). Every room has a distinct type (kitchen, bedroom, ...) whose
wall and floor colours are fixed per type, so a learner with vision can tell rooms apart;
furniture is typed, coloured from a named palette and placed against walls away from doors.
A house may have an upper floor of the same footprint, reached by a straight staircase whose
top opens onto the upstairs ``landing``.

Everything is drawn from one ``numpy.random.Generator`` per house, so a seed reproduces
a house exactly. Units are metres, z up, floor at z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CEILING_HEIGHT = 2.6
FLOOR_HEIGHT = 3.0  # floor-to-floor: 2.6 m rooms + a 0.4 m slab
STAIR_WIDTH = 1.0
STAIR_STEPS = 12
DOOR_WIDTH = 1.0
DOOR_HEIGHT = 2.1
WALL_HALF = 0.05  # walls are 0.1 m thick, centred on the grid lines

# Named colours for furniture (name -> sRGB); names are what instructions say.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "orange": (235, 130, 30),
    "yellow": (235, 205, 50),
    "green": (50, 150, 60),
    "blue": (45, 80, 200),
    "purple": (125, 60, 165),
    "pink": (235, 130, 175),
    "brown": (120, 75, 40),
    "black": (30, 30, 32),
    "white": (240, 240, 235),
    "gray": (128, 128, 128),
    "teal": (30, 140, 140),
}

# Room types: wall, floor and ceiling colours (fixed per type so rooms are recognisable).
ROOM_STYLES: dict[str, dict[str, tuple[int, int, int]]] = {
    "living room": {"wall": (225, 200, 150), "floor": (140, 95, 55), "ceiling": (245, 240, 230)},
    "kitchen": {"wall": (235, 235, 225), "floor": (190, 60, 55), "ceiling": (250, 250, 245)},
    "bedroom": {"wall": (170, 190, 230), "floor": (185, 150, 110), "ceiling": (240, 240, 250)},
    "bathroom": {"wall": (150, 215, 220), "floor": (235, 235, 240), "ceiling": (245, 250, 250)},
    "hallway": {"wall": (205, 205, 200), "floor": (95, 90, 85), "ceiling": (235, 235, 235)},
    "office": {"wall": (175, 205, 160), "floor": (110, 110, 120), "ceiling": (240, 245, 240)},
    "dining room": {"wall": (200, 120, 100), "floor": (160, 120, 80), "ceiling": (245, 235, 230)},
    "laundry room": {"wall": (240, 225, 120), "floor": (200, 200, 200), "ceiling": (250, 250, 240)},
    "gym": {"wall": (110, 120, 140), "floor": (60, 140, 80), "ceiling": (230, 230, 235)},
    "nursery": {"wall": (245, 190, 205), "floor": (215, 200, 160), "ceiling": (250, 245, 245)},
    "library": {"wall": (95, 120, 90), "floor": (110, 70, 45), "ceiling": (235, 230, 215)},
    "game room": {"wall": (70, 60, 120), "floor": (150, 40, 60), "ceiling": (225, 225, 235)},
    "landing": {"wall": (200, 185, 165), "floor": (75, 60, 50), "ceiling": (240, 235, 230)},
}
ROOM_TYPES = tuple(ROOM_STYLES)
# Types a one-floor house draws from (the classic nine); two-floor houses use all but the
# landing for their rooms, and the landing is the room at the top of the stairs.
BASIC_TYPES = ROOM_TYPES[:9]

# Furniture catalogue: type -> (footprint along the wall, depth, height, allowed colours).
# ``wall`` objects stand against a wall facing into the room; ``centre`` ones stand free.
FURNITURE: dict[str, dict] = {
    "sofa": {"size": (2.0, 0.9, 0.85), "colours": ("red", "blue", "green", "gray", "brown", "purple")},
    "armchair": {"size": (0.9, 0.9, 0.9), "colours": ("red", "blue", "green", "orange", "pink", "teal")},
    "tv": {"size": (1.2, 0.45, 1.2), "colours": ("black", "gray")},
    "coffee table": {"size": (1.0, 0.6, 0.45), "colours": ("brown", "white", "black"), "centre": True},
    "bookshelf": {"size": (1.0, 0.35, 1.9), "colours": ("brown", "white", "black")},
    "plant": {"size": (0.5, 0.5, 1.3), "colours": ("green",)},
    "lamp": {"size": (0.4, 0.4, 1.6), "colours": ("yellow", "white", "orange", "red")},
    "fridge": {"size": (0.8, 0.7, 1.85), "colours": ("white", "gray", "black", "red")},
    "stove": {"size": (0.75, 0.65, 0.9), "colours": ("white", "black", "gray")},
    "counter": {"size": (1.8, 0.65, 0.9), "colours": ("white", "brown", "gray", "teal")},
    "kitchen table": {"size": (1.2, 0.8, 0.75), "colours": ("brown", "white", "yellow"), "centre": True},
    "bed": {"size": (1.6, 2.0, 0.55), "colours": ("blue", "white", "pink", "purple", "green", "red")},
    "wardrobe": {"size": (1.2, 0.6, 2.0), "colours": ("brown", "white", "black")},
    "nightstand": {"size": (0.5, 0.45, 0.55), "colours": ("brown", "white")},
    "bathtub": {"size": (1.7, 0.8, 0.6), "colours": ("white", "blue", "pink")},
    "sink": {"size": (0.7, 0.5, 0.9), "colours": ("white", "gray")},
    "toilet": {"size": (0.5, 0.7, 0.8), "colours": ("white",)},
    "desk": {"size": (1.4, 0.7, 0.75), "colours": ("brown", "white", "black", "gray")},
    "chair": {"size": (0.5, 0.5, 0.95), "colours": ("black", "red", "blue", "green", "orange")},
    "filing cabinet": {"size": (0.5, 0.6, 1.3), "colours": ("gray", "black", "blue")},
    "dining table": {"size": (1.8, 1.0, 0.75), "colours": ("brown", "white", "black"), "centre": True},
    "cabinet": {"size": (1.2, 0.5, 1.0), "colours": ("brown", "white", "teal")},
    "washing machine": {"size": (0.65, 0.65, 0.9), "colours": ("white",)},
    "dryer": {"size": (0.65, 0.65, 0.9), "colours": ("gray", "white")},
    "shelf": {"size": (1.0, 0.4, 1.6), "colours": ("white", "brown", "gray")},
    "basket": {"size": (0.5, 0.4, 0.5), "colours": ("brown", "yellow", "blue")},
    "bench": {"size": (1.4, 0.45, 0.5), "colours": ("brown", "black", "gray")},
    "coat rack": {"size": (0.5, 0.5, 1.8), "colours": ("brown", "black")},
    "treadmill": {"size": (0.8, 1.8, 1.3), "colours": ("black", "gray")},
    "exercise ball": {"size": (0.65, 0.65, 0.65), "colours": ("red", "blue", "yellow", "purple")},
    "painting": {"size": (1.0, 0.06, 0.7), "colours": ("red", "blue", "yellow", "green", "orange"),
                 "hang": 1.25},
    "crib": {"size": (1.3, 0.75, 1.0), "colours": ("white", "pink", "blue", "yellow")},
    "toy box": {"size": (0.8, 0.5, 0.5), "colours": ("red", "blue", "yellow", "green", "orange")},
    "rocking chair": {"size": (0.7, 0.8, 1.0), "colours": ("brown", "white", "green")},
    "globe": {"size": (0.5, 0.5, 1.1), "colours": ("blue", "teal")},
    "pool table": {"size": (2.2, 1.2, 0.8), "colours": ("green", "blue", "red"), "centre": True},
    "arcade machine": {"size": (0.7, 0.7, 1.8), "colours": ("black", "purple", "red", "blue")},
    "beanbag": {"size": (0.9, 0.9, 0.6), "colours": ("orange", "purple", "red", "teal", "pink")},
}

# What each room type holds: (must-have types, optional types).
ROOM_CONTENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "living room": (("sofa", "tv"), ("armchair", "coffee table", "bookshelf", "plant", "lamp", "painting")),
    "kitchen": (("fridge", "stove"), ("counter", "kitchen table", "plant")),
    "bedroom": (("bed",), ("wardrobe", "nightstand", "lamp", "painting")),
    "bathroom": (("sink", "toilet"), ("bathtub", "basket", "plant")),
    "hallway": (("plant",), ("bench", "coat rack", "painting", "lamp")),
    "office": (("desk", "chair"), ("bookshelf", "filing cabinet", "plant", "lamp")),
    "dining room": (("dining table",), ("cabinet", "plant", "painting", "lamp")),
    "laundry room": (("washing machine",), ("dryer", "shelf", "basket")),
    "gym": (("treadmill",), ("exercise ball", "bench", "shelf")),
    "nursery": (("crib",), ("toy box", "rocking chair", "lamp", "basket")),
    "library": (("bookshelf",), ("armchair", "globe", "lamp", "desk")),
    "game room": (("pool table",), ("arcade machine", "beanbag", "painting")),
    "landing": (("plant",), ("painting", "bench")),
}


@dataclass
class Room:
    """An axis-aligned rectangular room ``[x0, x1] x [y0, y1]`` (wall centre lines)."""

    index: int
    type: str
    x0: float
    y0: float
    x1: float
    y1: float
    cell: tuple[int, int]
    wall_rgb: tuple[int, int, int]
    floor_rgb: tuple[int, int, int]
    ceiling_rgb: tuple[int, int, int]
    floor: int = 0  # storey: 0 ground, 1 upstairs
    z0: float = 0.0  # height of its floor

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        return self.x0 + margin <= x <= self.x1 - margin and self.y0 + margin <= y <= self.y1 - margin


@dataclass
class Door:
    """An opening of ``DOOR_WIDTH`` in the wall shared by rooms ``a`` and ``b``.

    ``axis`` is the direction the wall runs: ``"x"`` for a wall at constant y (the door
    spans x in [centre - w/2, centre + w/2]), ``"y"`` for a wall at constant x.
    """

    index: int
    a: int
    b: int
    x: float
    y: float
    axis: str
    width: float = DOOR_WIDTH
    floor: int = 0


@dataclass
class Box:
    """An axis-aligned box, min corner and max corner, with a colour."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    rgb: tuple[int, int, int]


@dataclass
class SceneObject:
    """A piece of furniture: typed, coloured, positioned; rendered as one or more boxes."""

    index: int
    type: str
    colour: str
    rgb: tuple[int, int, int]
    room: int
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    parts: list[Box] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.type}"


@dataclass
class Stairs:
    """A straight staircase inside ``room0`` (ground floor) up to ``room1`` (directly above).

    ``footprint`` is the stair's rectangle (also the opening in the upper floor); the climb
    runs along ``axis`` from ``bottom`` (a standing spot on the ground floor in front of the
    first step) over ``mid`` (half-way up, standing on the steps) to ``top`` (on the upper
    floor just past the opening). ``direction`` is +1 when climbing increases the coordinate.
    """

    room0: int
    room1: int
    footprint: tuple[float, float, float, float]
    axis: str
    direction: int
    bottom: tuple[float, float]
    mid: tuple[float, float]
    top: tuple[float, float]

    def zone(self, pad: float = 0.6) -> tuple[float, float, float, float]:
        """The footprint extended by ``pad`` at both ends of the run (kept free of doors and furniture)."""
        x0, y0, x1, y1 = self.footprint
        if self.axis == "x":
            return (x0 - pad, y0, x1 + pad, y1)
        return (x0, y0 - pad, x1, y1 + pad)


@dataclass
class House:
    rooms: list[Room]
    doors: list[Door]
    objects: list[SceneObject]
    walls: list[list[tuple[float, float, float, float]]]  # per floor: wall pieces (x0, y0, x1, y1), door gaps removed
    extent: tuple[float, float, float, float]  # x0, y0, x1, y1
    stairs: Stairs | None = None

    @property
    def floors(self) -> int:
        return len(self.walls)


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int = 8) -> tuple[int, int, int]:
    d = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(np.clip(c + int(v), 0, 255)) for c, v in zip(rgb, d))  # type: ignore[return-value]


def _grid_shape(rng: np.random.Generator, min_rooms: int, max_rooms: int) -> tuple[int, int]:
    shapes = [(r, c) for r in (1, 2, 3) for c in (2, 3, 4) if min_rooms <= r * c <= max_rooms]
    if not shapes:
        shapes = [(2, 2)]
    return shapes[int(rng.integers(len(shapes)))]


def _types_for(rng: np.random.Generator, n: int, fixed: dict[int, str], allowed: list[str]) -> list[str]:
    """``n`` distinct room types: ``fixed`` cells keep theirs, the rest drawn from ``allowed``."""
    pool = [t for t in allowed if t not in fixed.values()]
    pool = [pool[int(k)] for k in rng.permutation(len(pool))]
    out, k = [], 0
    for i in range(n):
        if i in fixed:
            out.append(fixed[i])
        else:
            out.append(pool[k % len(pool)])
            k += 1
    return out


def _rooms_for(rng: np.random.Generator, types: list[str], xs: np.ndarray, ys: np.ndarray, cols: int,
               floor: int, offset: int) -> list[Room]:
    rooms = []
    for i, t in enumerate(types):
        r, c = divmod(i, cols)
        style = ROOM_STYLES[t]
        rooms.append(Room(offset + i, t, float(xs[c]), float(ys[r]), float(xs[c + 1]), float(ys[r + 1]), (r, c),
                          _jitter(style["wall"], rng), _jitter(style["floor"], rng), _jitter(style["ceiling"], rng, 4),
                          floor, floor * FLOOR_HEIGHT))
    return rooms


def _doors_for(rng: np.random.Generator, rooms: list[Room], rows: int, cols: int, floor: int,
               first_index: int) -> list[Door]:
    """Random spanning tree over grid neighbours (randomised Prim), then a few extra loops."""
    n = rows * cols
    offset = rooms[0].index

    def neighbours(i: int) -> list[int]:
        r, c = divmod(i, cols)
        out = []
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < rows and 0 <= cc < cols:
                out.append(rr * cols + cc)
        return out

    start = int(rng.integers(n))
    in_tree = {start}
    pairs: list[tuple[int, int]] = []
    frontier = [(start, j) for j in neighbours(start)]
    while len(in_tree) < n:
        frontier = [(a, b) for a, b in frontier if b not in in_tree]
        a, b = frontier[int(rng.integers(len(frontier)))]
        pairs.append((min(a, b), max(a, b)))
        in_tree.add(b)
        frontier.extend((b, j) for j in neighbours(b) if j not in in_tree)
    candidates = sorted({(min(i, j), max(i, j)) for i in range(n) for j in neighbours(i)} - set(pairs))
    extra = int(rng.integers(0, 2 + n // 4))
    for idx in rng.permutation(len(candidates))[:extra]:
        pairs.append(candidates[int(idx)])
    pairs.sort()

    doors: list[Door] = []
    for a, b in pairs:
        ra, rb = rooms[a], rooms[b]
        if ra.cell[0] == rb.cell[0]:  # side by side: wall at constant x
            x = min(ra.x1, rb.x1)
            lo, hi = max(ra.y0, rb.y0), min(ra.y1, rb.y1)
            y = float(np.round(rng.uniform(lo + 1.0, hi - 1.0), 2))
            doors.append(Door(first_index + len(doors), offset + a, offset + b, float(x), y, "y", floor=floor))
        else:  # one above the other: wall at constant y
            y = min(ra.y1, rb.y1)
            lo, hi = max(ra.x0, rb.x0), min(ra.x1, rb.x1)
            x = float(np.round(rng.uniform(lo + 1.0, hi - 1.0), 2))
            doors.append(Door(first_index + len(doors), offset + a, offset + b, x, float(y), "x", floor=floor))
    return doors


def _place_stairs(room0: Room, room1: Room, doors: list[Door]) -> Stairs | None:
    """A straight staircase against a wall of ``room0`` that keeps clear of every door of
    ``room0`` and ``room1``; ``None`` when the room is too small or its walls are taken."""
    W = WALL_HALF
    ix0, iy0, ix1, iy1 = room0.x0 + W, room0.y0 + W, room0.x1 - W, room0.y1 - W
    ex, ey = ix1 - ix0, iy1 - iy0
    axes = ("x", "y") if ex >= ey else ("y", "x")
    for axis in axes:
        extent = ex if axis == "x" else ey
        run = min(3.0, extent - 1.7)
        if run < 1.8:
            continue
        for side in (0, 1):  # against the low or the high wall across the run
            for direction in (1, -1):
                if axis == "x":
                    y0 = iy0 if side == 0 else iy1 - STAIR_WIDTH
                    start = ix0 + 0.85 if direction == 1 else ix1 - 0.85
                    end = start + direction * run
                    fx0, fx1 = min(start, end), max(start, end)
                    fp = (round(fx0, 3), round(y0, 3), round(fx1, 3), round(y0 + STAIR_WIDTH, 3))
                    yc = y0 + STAIR_WIDTH / 2
                    bottom, top = (start - direction * 0.55, yc), (end + direction * 0.55, yc)
                    mid = ((start + end) / 2, yc)
                else:
                    x0 = ix0 if side == 0 else ix1 - STAIR_WIDTH
                    start = iy0 + 0.85 if direction == 1 else iy1 - 0.85
                    end = start + direction * run
                    fy0, fy1 = min(start, end), max(start, end)
                    fp = (round(x0, 3), round(fy0, 3), round(x0 + STAIR_WIDTH, 3), round(fy1, 3))
                    xc = x0 + STAIR_WIDTH / 2
                    bottom, top = (xc, start - direction * 0.55), (xc, end + direction * 0.55)
                    mid = (xc, (start + end) / 2)
                stairs = Stairs(room0.index, room1.index, fp, axis, direction,
                                tuple(round(v, 3) for v in bottom), tuple(round(v, 3) for v in mid),  # type: ignore[arg-type]
                                tuple(round(v, 3) for v in top))  # type: ignore[arg-type]
                zone = stairs.zone(0.9)
                blocked = any(_overlaps(zone, k) for room in (room0, room1) for k in _door_keepouts(room, doors))
                if not blocked:
                    return stairs
    return None


def make_house(rng: np.random.Generator, min_rooms: int = 5, max_rooms: int = 9, floors: int = 1) -> House:
    """Draw one house: room grid(s), types, doors, walls with openings, stairs and furniture.

    ``floors=2`` stacks a second storey of the same footprint (4-6 rooms per floor) joined by
    a staircase from the ground-floor hallway to the upstairs landing; when no wall of the
    hallway can take the stairs the house stays single-storey.
    """
    if floors == 2:
        rows, cols = _grid_shape(rng, 4, 6)
    else:
        rows, cols = _grid_shape(rng, min_rooms, max_rooms)
    widths = [float(np.round(rng.uniform(3.6, 5.6), 1)) for _ in range(cols)]
    depths = [float(np.round(rng.uniform(3.6, 5.6), 1)) for _ in range(rows)]
    # A 3-row house gets a narrow hallway as its middle row, like a corridor plan.
    hallway_row = 1 if rows == 3 and rng.random() < 0.7 else -1
    if hallway_row >= 0:
        depths[hallway_row] = float(np.round(rng.uniform(2.2, 2.8), 1))
    xs = np.concatenate([[0.0], np.cumsum(widths)])
    ys = np.concatenate([[0.0], np.cumsum(depths)])
    n = rows * cols
    if hallway_row >= 0:
        hall = hallway_row * cols + cols // 2
    else:
        hall = int(rng.integers(n))
    basic = list(BASIC_TYPES)
    types0 = _types_for(rng, n, {hall: "hallway"}, [t for t in (basic if floors == 1 else ROOM_TYPES)
                                                   if t not in ("hallway", "landing")])
    rooms = _rooms_for(rng, types0, xs, ys, cols, 0, 0)
    doors = _doors_for(rng, rooms, rows, cols, 0, 0)
    walls = [_wall_pieces(xs, ys, doors)]
    stairs = None
    if floors == 2:
        # Upstairs doors depend only on the grid, so lay them out first, then look for a
        # ground-floor room whose walls can take the stairs; the room above it is the landing.
        shell = _rooms_for(rng, ["landing"] * n, xs, ys, cols, 1, n)
        doors1 = _doors_for(rng, shell, rows, cols, 1, len(doors))
        for cell in [int(c) for c in rng.permutation(n)]:
            stairs = _place_stairs(rooms[cell], shell[cell], doors + doors1)
            if stairs is not None:
                break
        if stairs is not None:
            used = set(types0)
            allowed = [t for t in ROOM_TYPES if t not in used and t != "landing"]
            types1 = _types_for(rng, n, {cell: "landing"}, allowed if len(allowed) >= n - 1 else
                                [t for t in ROOM_TYPES if t != "landing"])
            rooms += _rooms_for(rng, types1, xs, ys, cols, 1, n)
            doors += doors1
            walls.append(_wall_pieces(xs, ys, doors1))
    objects = _furnish(rooms, doors, rng, stairs)
    return House(rooms, doors, objects, walls, (0.0, 0.0, float(xs[-1]), float(ys[-1])), stairs)


def _wall_pieces(xs: np.ndarray, ys: np.ndarray, doors: list[Door]) -> list[tuple[float, float, float, float]]:
    """All grid-line wall segments, split around door openings."""
    pieces: list[tuple[float, float, float, float]] = []
    for y in ys:  # walls at constant y, split per column span
        for c in range(len(xs) - 1):
            cuts = sorted(d.x for d in doors if d.axis == "x" and abs(d.y - y) < 1e-6 and xs[c] < d.x < xs[c + 1])
            start = float(xs[c])
            for cx in cuts:
                pieces.append((start, float(y), cx - DOOR_WIDTH / 2, float(y)))
                start = cx + DOOR_WIDTH / 2
            pieces.append((start, float(y), float(xs[c + 1]), float(y)))
    for x in xs:
        for r in range(len(ys) - 1):
            cuts = sorted(d.y for d in doors if d.axis == "y" and abs(d.x - x) < 1e-6 and ys[r] < d.y < ys[r + 1])
            start = float(ys[r])
            for cy in cuts:
                pieces.append((float(x), start, float(x), cy - DOOR_WIDTH / 2))
                start = cy + DOOR_WIDTH / 2
            pieces.append((float(x), start, float(x), float(ys[r + 1])))
    return pieces


def _door_keepouts(room: Room, doors: list[Door]) -> list[tuple[float, float, float, float]]:
    """Rectangles in front of each door of ``room`` that furniture must leave free."""
    out = []
    for d in doors:
        if room.index not in (d.a, d.b):
            continue
        if d.axis == "x":
            out.append((d.x - 0.9, d.y - 1.3, d.x + 0.9, d.y + 1.3))
        else:
            out.append((d.x - 1.3, d.y - 0.9, d.x + 1.3, d.y + 0.9))
    return out


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float], gap: float = 0.0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _furnish(rooms: list[Room], doors: list[Door], rng: np.random.Generator,
             stairs: Stairs | None = None) -> list[SceneObject]:
    objects: list[SceneObject] = []
    for room in rooms:
        must, optional = ROOM_CONTENTS[room.type]
        n_opt = int(rng.integers(1, min(3, len(optional)) + 1))
        chosen = list(must) + [optional[int(i)] for i in sorted(rng.permutation(len(optional))[:n_opt])]
        taken = _door_keepouts(room, doors)
        if stairs is not None and room.index in (stairs.room0, stairs.room1):
            taken.append(stairs.zone(0.9))  # the steps below, the opening above, room to step on and off
        placed_rects: list[tuple[float, float, float, float]] = []
        used_colours: set[str] = set()
        for kind in chosen:
            spec = FURNITURE[kind]
            # Paintings hang above furniture: they only keep clear of the doors.
            rect = _place(room, spec, taken if "hang" in spec else taken + placed_rects, rng)
            if rect is None:
                continue
            colours = [c for c in spec["colours"] if c not in used_colours] or list(spec["colours"])
            colour = colours[int(rng.integers(len(colours)))]
            used_colours.add(colour)
            x0, y0, x1, y1 = rect
            w, d, h = spec["size"]
            z0 = room.z0 + float(spec.get("hang", 0.0))
            centre = ((x0 + x1) / 2, (y0 + y1) / 2, z0 + h / 2)
            size = (x1 - x0, y1 - y0, h)
            obj = SceneObject(len(objects), kind, colour, PALETTE[colour], room.index,
                              tuple(round(v, 3) for v in centre), tuple(round(v, 3) for v in size))  # type: ignore[arg-type]
            obj.parts = _parts(kind, (x0, y0, z0), (x1, y1, z0 + h), PALETTE[colour])
            objects.append(obj)
            if not spec.get("hang"):
                placed_rects.append(rect)
    return objects


def _place(room: Room, spec: dict, taken: list[tuple[float, float, float, float]],
           rng: np.random.Generator) -> tuple[float, float, float, float] | None:
    """A free footprint for one object: against a wall, or free-standing near the centre."""
    w, d, _ = spec["size"]
    inner = (room.x0 + WALL_HALF, room.y0 + WALL_HALF, room.x1 - WALL_HALF, room.y1 - WALL_HALF)
    for _attempt in range(30):
        if spec.get("centre"):
            cx, cy = room.centre
            cx += float(rng.uniform(-0.4, 0.4))
            cy += float(rng.uniform(-0.4, 0.4))
            if rng.random() < 0.5:
                w, d = d, w
            rect = (cx - w / 2, cy - d / 2, cx + w / 2, cy + d / 2)
        else:
            side = int(rng.integers(4))
            if side in (0, 2):  # south / north wall: footprint w along x, d along y
                along = float(rng.uniform(inner[0] + w / 2, inner[2] - w / 2)) if inner[2] - inner[0] > w else None
                if along is None:
                    continue
                if side == 0:
                    rect = (along - w / 2, inner[1], along + w / 2, inner[1] + d)
                else:
                    rect = (along - w / 2, inner[3] - d, along + w / 2, inner[3])
            else:  # west / east wall: footprint d along x, w along y
                along = float(rng.uniform(inner[1] + w / 2, inner[3] - w / 2)) if inner[3] - inner[1] > w else None
                if along is None:
                    continue
                if side == 3:
                    rect = (inner[0], along - w / 2, inner[0] + d, along + w / 2)
                else:
                    rect = (inner[2] - d, along - w / 2, inner[2], along + w / 2)
        rect = tuple(round(v, 3) for v in rect)  # type: ignore[assignment]
        if rect[0] < inner[0] - 1e-9 or rect[1] < inner[1] - 1e-9 or rect[2] > inner[2] + 1e-9 or rect[3] > inner[3] + 1e-9:
            continue
        if any(_overlaps(rect, t, 0.3) for t in taken):
            continue
        return rect
    return None


def _parts(kind: str, lo: tuple[float, float, float], hi: tuple[float, float, float],
           rgb: tuple[int, int, int]) -> list[Box]:
    """Boxes that draw one object; a few types get a second, differently shaded part."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    dark = tuple(int(c * 0.55) for c in rgb)
    light = tuple(min(255, int(c * 0.6 + 110)) for c in rgb)
    if kind == "lamp":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return [Box((cx - 0.04, cy - 0.04, z0), (cx + 0.04, cy + 0.04, z1 - 0.4), (60, 60, 60)),
                Box((x0, y0, z1 - 0.4), (x1, y1, z1), rgb)]
    if kind == "plant":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return [Box((cx - 0.18, cy - 0.18, z0), (cx + 0.18, cy + 0.18, z0 + 0.4), (150, 80, 50)),
                Box((x0, y0, z0 + 0.4), (x1, y1, z1), rgb)]
    if kind == "bed":
        return [Box((x0, y0, z0), (x1, y1, z1), rgb),
                Box((x0 + 0.05, y0 + 0.05, z1), (x1 - 0.05, y1 - 0.05, z1 + 0.08), light)]  # type: ignore[arg-type]
    if kind in ("dining table", "kitchen table", "desk", "coffee table"):
        return [Box((x0, y0, z1 - 0.06), (x1, y1, z1), rgb),
                Box(((x0 + x1) / 2 - 0.08, (y0 + y1) / 2 - 0.08, z0), ((x0 + x1) / 2 + 0.08, (y0 + y1) / 2 + 0.08,
                    z1 - 0.06), dark)]  # type: ignore[arg-type]
    if kind == "tv":
        return [Box((x0 + 0.1, y0 + 0.1, z0), (x1 - 0.1, y1 - 0.1, z0 + 0.5), (90, 60, 40)),
                Box((x0, y0, z0 + 0.5), (x1, y1, z1), rgb)]
    return [Box((x0, y0, z0), (x1, y1, z1), rgb)]
