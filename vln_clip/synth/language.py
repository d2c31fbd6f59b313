"""Templated navigation instructions from what lies along a path.

A path is first turned into language-neutral *events* computed from the geometry: the
initial turn (start heading vs. the first edge, MatterSim's clockwise heading), turns at
intermediate viewpoints, rooms left and entered through doors, furniture passed close by,
and where to stop (next to the nearest object of the goal room, or in a doorway). The
events are then realised by templates with synonyms: three short R2R-style English
instructions per path, and one long RxR-style instruction per language (English, Hindi in
Devanagari, Telugu in Telugu script). The Hindi and Telugu templates use simplified
grammar; they are templated text, not human annotations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vln_clip.geometry import wrap_to_pi

from .layout import Viewpoint
from .world import House, SceneObject


@dataclass
class Event:
    kind: str  # turn | exit | enter | stairs | pass | stop_object | stop_room | stop_door | start
    direction: str = ""  # turns: left, right, slight left, slight right, around; stairs: up, down
    room: str = ""
    obj: SceneObject | None = None
    other_room: str = ""
    extra: list[SceneObject] = field(default_factory=list)
    side: str = ""  # for "pass": the side the object is on while walking past ("left" / "right")


def classify_turn(rel: float) -> str:
    """'' (straight), 'slight left/right', 'left', 'right' or 'around' for a relative heading."""
    deg = math.degrees(rel)
    a = abs(deg)
    side = "right" if deg > 0 else "left"  # MatterSim headings grow clockwise: positive = right
    if a < 30:
        return ""
    if a < 60:
        return f"slight {side}"
    if a < 140:
        return side
    return "around"


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def path_events(house: House, vps: dict[str, Viewpoint], path: list[str], heading: float,
                long: bool = False) -> list[Event]:
    """Events along ``path`` starting with camera ``heading`` (radians, clockwise from +y)."""
    pts = [np.array(vps[v].xy) for v in path]
    rooms = house.rooms
    events: list[Event] = []
    start = vps[path[0]]
    cur_room = start.room
    if start.door >= 0:  # standing in a doorway: "in" the room the path heads into
        first = vps[path[1]] if len(path) > 1 else start
        door = house.doors[start.door]
        cur_room = first.room if first.door < 0 and first.room in (door.a, door.b) else door.a
    passed: set[int] = set()
    if long:
        near = _objects_near(house, cur_room, [pts[0]], 2.5)
        events.append(Event("start", room=rooms[cur_room].type, obj=near[0] if near else None))
        passed.update(o.index for o in near[:1])
    prev_heading = heading
    seg_points: list[np.ndarray] = [pts[0]]
    for i in range(len(path) - 1):
        h = math.atan2(pts[i + 1][0] - pts[i][0], pts[i + 1][1] - pts[i][1])
        turn = classify_turn(wrap_to_pi(h - prev_heading))
        if turn and (long or not turn.startswith("slight") or i == 0):
            events.append(Event("turn", direction=turn))
        prev_heading = h
        here, nxt = vps[path[i]], vps[path[i + 1]]
        last = i + 1 == len(path) - 1
        if abs(nxt.z - here.z) > 0.5:  # on the stairs: one event per climb, the room changes at the end
            way = "up" if nxt.z > here.z else "down"
            if here.stair != 1:
                _add_pass(events, house, cur_room, seg_points + [pts[i + 1]], passed, long)
                events.append(Event("stairs", direction=way))
            if nxt.stair != 1 and nxt.room != cur_room:
                cur_room = nxt.room
                events.append(Event("enter", room=rooms[cur_room].type))
                seg_points = [pts[i + 1]]
            else:
                seg_points.append(pts[i + 1])
            continue
        if nxt.door >= 0:
            if here.door >= 0 and i > 0:  # doorway to doorway across a room: say the room
                events.append(Event("enter", room=rooms[cur_room].type))
            door = house.doors[nxt.door]
            other = door.b if door.a == cur_room else door.a
            _add_pass(events, house, cur_room, seg_points + [pts[i + 1]], passed, long)
            if last:
                events.append(Event("stop_door", room=rooms[other].type, other_room=rooms[cur_room].type))
                return events
            events.append(Event("exit", room=rooms[cur_room].type, other_room=rooms[other].type))
            cur_room = other
            seg_points = [pts[i + 1]]
            continue
        if nxt.room != cur_room:  # straight through an opening without stopping in it
            _add_pass(events, house, cur_room, seg_points, passed, long)
            events.append(Event("exit", room=rooms[cur_room].type, other_room=rooms[nxt.room].type))
            cur_room = nxt.room
            events.append(Event("enter", room=rooms[cur_room].type))
            seg_points = [pts[i + 1]]
            continue
        if here.door >= 0:
            events.append(Event("enter", room=rooms[cur_room].type))
        seg_points.append(pts[i + 1])
    goal = pts[-1]
    near = _objects_near(house, cur_room, [goal], 3.0)
    _add_pass(events, house, cur_room, seg_points, passed | {o.index for o in near[:1]}, long)
    if near:
        others = [o for o in near[1:] if o.index not in passed][:2]
        events.append(Event("stop_object", room=rooms[cur_room].type, obj=near[0], extra=others))
    else:
        events.append(Event("stop_room", room=rooms[cur_room].type))
    return events


def _objects_near(house: House, room: int, points: list[np.ndarray], radius: float) -> list[SceneObject]:
    cands = []
    for obj in house.objects:
        if obj.room != room:
            continue
        c = np.array(obj.centre[:2])
        d = min(float(np.linalg.norm(c - p)) - 0.5 * min(obj.size[0], obj.size[1]) for p in points)
        if d <= radius:
            cands.append((d, obj.index, obj))
    cands.sort(key=lambda x: (x[0], x[1]))
    return [c[2] for c in cands]


def _add_pass(events: list[Event], house: House, room: int, points: list[np.ndarray], passed: set[int],
              long: bool) -> None:
    if len(points) < 2:
        return
    cands = []
    for obj in house.objects:
        if obj.room != room or obj.index in passed:
            continue
        c = np.array(obj.centre[:2])
        d = min(_seg_dist(c, a, b) for a, b in zip(points, points[1:])) - 0.5 * min(obj.size[0], obj.size[1])
        if d <= 1.8:
            cands.append((d, obj.index, obj))
    cands.sort(key=lambda x: (x[0], x[1]))
    for _, idx, obj in cands[: 2 if long else 1]:
        passed.add(idx)
        events.append(Event("pass", room=house.rooms[room].type, obj=obj, side=_side(obj, points)))


def _side(obj: SceneObject, points: list[np.ndarray]) -> str:
    """Which hand the object is on while walking the nearest segment (x east, y north)."""
    c = np.array(obj.centre[:2])
    a, b = min(zip(points, points[1:]), key=lambda ab: _seg_dist(c, ab[0], ab[1]))
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return "left" if cross > 0 else "right"


# ---------------------------------------------------------------------------------------
# English (R2R style: short, three variants per path)

EN_TURN = {
    "left": ["turn left", "make a left", "go left", "take a left"],
    "right": ["turn right", "make a right", "go right", "take a right"],
    "slight left": ["bear left", "veer slightly left", "turn slightly left"],
    "slight right": ["bear right", "veer slightly right", "turn slightly right"],
    "around": ["turn around", "turn back", "face the other way"],
}
EN_EXIT = ["exit the {room}", "walk out of the {room}", "leave the {room}", "go out of the {room}"]
EN_ENTER = ["enter the {room}", "walk into the {room}", "go into the {room}", "head into the {room}"]
EN_THROUGH = ["go through the door into the {room}", "walk through the doorway into the {room}"]
EN_PASS = ["pass the {obj}", "walk past the {obj}", "go by the {obj}", "continue past the {obj}"]
EN_STOP_OBJ = ["stop next to the {obj}", "wait by the {obj}", "stop in front of the {obj}",
               "stop near the {obj}", "wait beside the {obj}"]
EN_STOP_ROOM = ["stop in the middle of the {room}", "wait in the {room}", "stop once you are in the {room}"]
EN_STOP_DOOR = ["stop in the doorway to the {room}", "wait at the door of the {room}",
                "stop at the entrance of the {room}"]
EN_JOIN = [" and ", ", then ", " and then "]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


EN_CROSS = ["go through the {room}", "cross the {room}", "walk through the {room}"]
EN_STAIRS = {"up": ["go up the stairs", "walk up the stairs", "climb the stairs", "head upstairs"],
             "down": ["go down the stairs", "walk down the stairs", "head downstairs"]}


def _compact(events: list[Event], style: int) -> list[Event]:
    """Shorter event lists for R2R-length instructions (about 25-35 words).

    ``enter X`` directly followed by ``exit X`` becomes ``cross X``; landmarks are capped
    (style 0: one, style 1: two, style 2: none) so long multi-room paths stay readable.
    """
    out: list[Event] = []
    k = 0
    while k < len(events):
        ev = events[k]
        nxt = events[k + 1] if k + 1 < len(events) else None
        if ev.kind == "enter" and nxt is not None and nxt.kind == "exit" and nxt.room == ev.room:
            out.append(Event("cross", room=ev.room, other_room=nxt.other_room))
            k += 2
            continue
        out.append(ev)
        k += 1
    cap = (1, 2, 0)[style]
    passes = [i for i, e in enumerate(out) if e.kind == "pass"]
    drop = set(passes[cap:])
    return [e for i, e in enumerate(out) if i not in drop]


def realise_en(events: list[Event], rng: np.random.Generator, style: int) -> str:
    """One English instruction; ``style`` 0 names rooms and objects, 1 leans on landmarks, 2 is terse.

    Style 1 says no turn at all, like the many R2R instructions that only name what to walk
    past and into ("walk past the sofa into the kitchen, stop by the fridge"): following it
    needs the views, so a vision-free follower cannot solve it from the words alone.
    """
    events = _compact(events, style)
    if style == 1:
        events = [e for e in events if e.kind != "turn"]
    clauses: list[str] = []
    skip_next_enter = False
    for k, ev in enumerate(events):
        nxt = events[k + 1] if k + 1 < len(events) else None
        if ev.kind == "turn":
            clauses.append(_pick(rng, EN_TURN[ev.direction]))
        elif ev.kind == "cross":
            clauses.append(_pick(rng, EN_CROSS).format(room=ev.room))
        elif ev.kind == "stairs":
            clauses.append(_pick(rng, EN_STAIRS[ev.direction]))
        elif ev.kind == "exit":
            if nxt is not None and nxt.kind == "enter" and (style == 2 or rng.random() < 0.5):
                if style == 2:
                    clauses.append(_pick(rng, EN_THROUGH).format(room=nxt.room))
                else:
                    clauses.append(_pick(rng, EN_EXIT).format(room=ev.room) + " into the " + nxt.room)
                skip_next_enter = True
            elif style == 2 and nxt is not None and nxt.kind == "cross":
                continue  # "go through the X" says it
            else:
                clauses.append(_pick(rng, EN_EXIT).format(room=ev.room))
        elif ev.kind == "enter":
            if skip_next_enter:
                skip_next_enter = False
                continue
            clauses.append(_pick(rng, EN_ENTER).format(room=ev.room))
        elif ev.kind == "pass":
            text = _pick(rng, EN_PASS).format(obj=ev.obj.name)
            if ev.side and rng.random() < 0.4:
                text += f" on your {ev.side}"
            clauses.append(text)
        elif ev.kind == "stop_object":
            text = _pick(rng, EN_STOP_OBJ).format(obj=ev.obj.name)
            if style == 0 or (style == 2 and rng.random() < 0.5):
                text += f" in the {ev.room}"
            clauses.append(text)
        elif ev.kind == "stop_room":
            clauses.append(_pick(rng, EN_STOP_ROOM).format(room=ev.room))
        elif ev.kind == "stop_door":
            clauses.append(_pick(rng, EN_STOP_DOOR).format(room=ev.room))
    if not clauses:
        clauses = ["stay where you are"]
    # Group clauses two by two into sentences.
    sentences = []
    for s in range(0, len(clauses), 2):
        part = clauses[s:s + 2]
        sentences.append(_pick(rng, EN_JOIN).join(part) if len(part) == 2 else part[0])
    return " ".join(x[0].upper() + x[1:] + "." for x in sentences)


# ---------------------------------------------------------------------------------------
# Long, RxR-style instructions in English, Hindi and Telugu

# Hindi nouns are given in the oblique form, since they always precede a postposition here.
HI_ROOM = {
    "living room": "बैठक", "kitchen": "रसोई", "bedroom": "शयनकक्ष", "bathroom": "स्नानघर",
    "hallway": "गलियारे", "office": "दफ़्तर", "dining room": "भोजन कक्ष",
    "laundry room": "कपड़े धोने के कमरे", "gym": "व्यायामशाला", "nursery": "शिशु कक्ष",
    "library": "पुस्तकालय", "game room": "खेल कक्ष", "landing": "ऊपर के गलियारे",
}
HI_OBJ = {
    "sofa": "सोफ़े", "armchair": "आरामकुर्सी", "tv": "टीवी", "coffee table": "कॉफ़ी टेबल",
    "bookshelf": "किताबों की अलमारी", "plant": "पौधे", "lamp": "लैंप", "fridge": "फ़्रिज",
    "stove": "चूल्हे", "counter": "काउंटर", "kitchen table": "मेज़", "bed": "पलंग",
    "wardrobe": "अलमारी", "nightstand": "छोटी मेज़", "bathtub": "बाथटब", "sink": "सिंक",
    "toilet": "टॉयलेट", "desk": "डेस्क", "chair": "कुर्सी", "filing cabinet": "फ़ाइल कैबिनेट",
    "dining table": "खाने की मेज़", "cabinet": "कैबिनेट", "washing machine": "वॉशिंग मशीन",
    "dryer": "ड्रायर", "shelf": "शेल्फ़", "basket": "टोकरी", "bench": "बेंच", "coat rack": "कोट स्टैंड",
    "treadmill": "ट्रेडमिल", "exercise ball": "व्यायाम गेंद", "painting": "चित्र",
    "crib": "पालने", "toy box": "खिलौनों के बक्से", "rocking chair": "झूलने वाली कुर्सी", "globe": "ग्लोब",
    "pool table": "पूल टेबल", "arcade machine": "आर्केड मशीन", "beanbag": "बीनबैग",
}
HI_COLOUR = {  # oblique adjective forms, used as "<colour> रंग के <object>"
    "red": "लाल", "orange": "नारंगी", "yellow": "पीले", "green": "हरे", "blue": "नीले",
    "purple": "बैंगनी", "pink": "गुलाबी", "brown": "भूरे", "black": "काले", "white": "सफ़ेद",
    "gray": "स्लेटी", "teal": "फ़िरोज़ी",
}
HI_TURN = {"left": "बाएँ मुड़िए", "right": "दाएँ मुड़िए", "slight left": "थोड़ा बाएँ मुड़िए",
           "slight right": "थोड़ा दाएँ मुड़िए", "around": "पीछे की ओर मुड़िए"}

TE_ROOM = {
    "living room": "హాలు", "kitchen": "వంటగది", "bedroom": "పడకగది", "bathroom": "స్నానాల గది",
    "hallway": "నడవా", "office": "ఆఫీసు గది", "dining room": "భోజనాల గది",
    "laundry room": "బట్టలు ఉతికే గది", "gym": "వ్యాయామ గది", "nursery": "పిల్లల గది",
    "library": "గ్రంథాలయం", "game room": "ఆటల గది", "landing": "మేడ మీది నడవా",
}
TE_OBJ = {
    "sofa": "సోఫా", "armchair": "చేతుల కుర్చీ", "tv": "టీవీ", "coffee table": "కాఫీ బల్ల",
    "bookshelf": "పుస్తకాల అర", "plant": "మొక్క", "lamp": "దీపం", "fridge": "ఫ్రిజ్",
    "stove": "పొయ్యి", "counter": "కౌంటర్", "kitchen table": "బల్ల", "bed": "మంచం",
    "wardrobe": "బీరువా", "nightstand": "చిన్న బల్ల", "bathtub": "స్నానపు తొట్టె", "sink": "సింక్",
    "toilet": "టాయిలెట్", "desk": "డెస్క్", "chair": "కుర్చీ", "filing cabinet": "ఫైళ్ల అలమర",
    "dining table": "భోజనాల బల్ల", "cabinet": "అలమర", "washing machine": "వాషింగ్ మెషిన్",
    "dryer": "డ్రైయర్", "shelf": "అర", "basket": "బుట్ట", "bench": "బెంచి", "coat rack": "కోటు స్టాండ్",
    "treadmill": "ట్రెడ్‌మిల్", "exercise ball": "వ్యాయామ బంతి", "painting": "చిత్రపటం",
    "crib": "ఉయ్యాల", "toy box": "బొమ్మల పెట్టె", "rocking chair": "ఊగే కుర్చీ", "globe": "గ్లోబు",
    "pool table": "పూల్ బల్ల", "arcade machine": "ఆర్కేడ్ మెషిన్", "beanbag": "బీన్‌బ్యాగ్",
}
TE_COLOUR = {
    "red": "ఎరుపు", "orange": "నారింజ", "yellow": "పసుపు", "green": "ఆకుపచ్చ", "blue": "నీలం",
    "purple": "ఊదా", "pink": "గులాబీ", "brown": "గోధుమ", "black": "నలుపు", "white": "తెలుపు",
    "gray": "బూడిద", "teal": "నీలిపచ్చ",
}
TE_TURN = {"left": "ఎడమవైపు తిరగండి", "right": "కుడివైపు తిరగండి", "slight left": "కొంచెం ఎడమవైపు తిరగండి",
           "slight right": "కొంచెం కుడివైపు తిరగండి", "around": "వెనక్కి తిరగండి"}


def _hi_obj(o: SceneObject) -> str:
    return f"{HI_COLOUR[o.colour]} रंग के {HI_OBJ[o.type]}"


def _te_obj(o: SceneObject) -> str:
    return f"{TE_COLOUR[o.colour]} రంగు {TE_OBJ[o.type]}"


HI_SIDE = {"left": "बाईं", "right": "दाईं"}
TE_SIDE = {"left": "ఎడమ", "right": "కుడి"}
EN_LONG_PASS = ["Walk past the {obj}, which will be on your {side}.", "Keep going with the {obj} on your {side}.",
                "You will pass the {obj} on your {side}."]
EN_LONG_EXIT = ["{verb} through the door that leads to the {other}.", "{verb} and step into the {other}.",
                "{verb}; the door takes you into the {other}."]


def realise_long(events: list[Event], lang: str, rng: np.random.Generator) -> str:
    """One long instruction in ``lang`` (``en``, ``hi`` or ``te``), every event spelled out.

    An ``exit`` sentence names the room behind the door, so the ``enter`` of that room that
    follows (possibly after a turn in the doorway) is not said again.
    """
    out: list[str] = []
    skip_enter = ""
    for ev in events:
        if ev.kind == "enter" and skip_enter == ev.room:
            skip_enter = ""
            continue
        if ev.kind == "exit":
            skip_enter = ev.other_room
        if lang == "en":
            if ev.kind == "start":
                s = f"You are standing in the {ev.room}"
                s += f", close to the {ev.obj.name}." if ev.obj else "."
            elif ev.kind == "turn":
                s = _pick(rng, EN_TURN[ev.direction]).capitalize() + "."
            elif ev.kind == "exit":
                verb = _pick(rng, EN_EXIT).format(room=ev.room).capitalize()
                s = _pick(rng, EN_LONG_EXIT).format(verb=verb, other=ev.other_room)
            elif ev.kind == "stairs":
                s = _pick(rng, EN_STAIRS[ev.direction]).capitalize() + (
                    " to the upper floor." if ev.direction == "up" else " to the ground floor.")
            elif ev.kind == "enter":
                s = f"Now {_pick(rng, EN_ENTER).format(room=ev.room)}."
            elif ev.kind == "pass":
                s = _pick(rng, EN_LONG_PASS).format(obj=ev.obj.name, side=ev.side)
            elif ev.kind == "stop_object":
                s = f"In the {ev.room}, look for the {ev.obj.name}"
                if ev.extra:
                    s += " (you will also see " + " and ".join(f"a {o.name}" for o in ev.extra) + ")"
                s += f". {_pick(rng, EN_STOP_OBJ).format(obj=ev.obj.name).capitalize()}; that is your destination."
            elif ev.kind == "stop_room":
                s = f"{_pick(rng, EN_STOP_ROOM).format(room=ev.room).capitalize()}; that is your destination."
            else:
                s = f"{_pick(rng, EN_STOP_DOOR).format(room=ev.room).capitalize()}, with the {ev.other_room} behind you."
        elif lang == "hi":
            if ev.kind == "start":
                s = f"आप {HI_ROOM[ev.room]} में खड़े हैं"
                s += f", {_hi_obj(ev.obj)} के पास।" if ev.obj else "।"
            elif ev.kind == "turn":
                s = HI_TURN[ev.direction] + "।"
            elif ev.kind == "exit":
                s = f"{HI_ROOM[ev.room]} से बाहर निकलिए और दरवाज़े से {HI_ROOM[ev.other_room]} में जाइए।"
            elif ev.kind == "stairs":
                s = "सीढ़ियाँ चढ़कर ऊपर जाइए।" if ev.direction == "up" else "सीढ़ियों से नीचे उतरिए।"
            elif ev.kind == "enter":
                s = f"अब {HI_ROOM[ev.room]} में जाइए।"
            elif ev.kind == "pass":
                s = f"{_hi_obj(ev.obj)} को अपनी {HI_SIDE[ev.side]} ओर छोड़ते हुए आगे बढ़िए।"
            elif ev.kind == "stop_object":
                s = f"{HI_ROOM[ev.room]} में {_hi_obj(ev.obj)} को ढूँढिए"
                if ev.extra:
                    s += " (वहाँ " + " और ".join(_hi_obj(o) for o in ev.extra) + " भी दिखेंगे)"
                s += f"। {_hi_obj(ev.obj)} के पास रुक जाइए, यही आपकी मंज़िल है।"
            elif ev.kind == "stop_room":
                s = f"{HI_ROOM[ev.room]} के बीच में रुक जाइए, यही आपकी मंज़िल है।"
            else:
                s = f"{HI_ROOM[ev.room]} के दरवाज़े पर रुक जाइए।"
        else:  # te
            if ev.kind == "start":
                s = f"మీరు {TE_ROOM[ev.room]} లో ఉన్నారు"
                s += f", {_te_obj(ev.obj)} దగ్గర." if ev.obj else "."
            elif ev.kind == "turn":
                s = TE_TURN[ev.direction] + "."
            elif ev.kind == "exit":
                s = f"{TE_ROOM[ev.room]} నుండి బయటకు వచ్చి తలుపు గుండా {TE_ROOM[ev.other_room]} లోకి వెళ్ళండి."
            elif ev.kind == "stairs":
                s = "మెట్లు ఎక్కి పైకి వెళ్ళండి." if ev.direction == "up" else "మెట్లు దిగి కిందకు వెళ్ళండి."
            elif ev.kind == "enter":
                s = f"ఇప్పుడు {TE_ROOM[ev.room]} లోకి వెళ్ళండి."
            elif ev.kind == "pass":
                s = f"మీ {TE_SIDE[ev.side]}వైపు ఉన్న {_te_obj(ev.obj)} దాటి ముందుకు నడవండి."
            elif ev.kind == "stop_object":
                s = f"{TE_ROOM[ev.room]} లో {_te_obj(ev.obj)} కోసం చూడండి"
                if ev.extra:
                    s += " (అక్కడ " + ", ".join(_te_obj(o) for o in ev.extra) + " కూడా కనిపిస్తాయి)"
                s += f". {_te_obj(ev.obj)} దగ్గర ఆగండి, అదే మీ గమ్యం."
            elif ev.kind == "stop_room":
                s = f"{TE_ROOM[ev.room]} మధ్యలో ఆగండి, అదే మీ గమ్యం."
            else:
                s = f"{TE_ROOM[ev.room]} తలుపు దగ్గర ఆగండి."
        out.append(s)
    return " ".join(out)
