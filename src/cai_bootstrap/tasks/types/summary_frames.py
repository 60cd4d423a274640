"""More training passages for summarization, composed from story frames (``summary_frames.yaml``).

Why: 80 hand-written training passages are too few for rounds of self-training. After three
rounds the stage's model was answering passages it had already answered (runs/tasks-std15:
round 3 had 33 fresh instances). A frame is a local-news story whose keyed slots each plant a
key fact in a sentence of their own, so the key facts hold by construction. Frames make
*training* passages only. Held-out passages stay hand-written, in other story shapes.
"""

from __future__ import annotations

import random
from functools import cache

from cai_bootstrap.tasks import bank

#: Passages composed for the training split (4x the hand-written 80), and their fixed seed:
#: the bank is static, like the hand-written one, whatever the run seed.
FRAME_PASSAGES = 320
FRAME_SEED = 0
#: draws per wanted passage before giving up on finding distinct ones
_MAX_DRAWS = 20


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _number(name: str, low: int, high: int, step: int, rng: random.Random) -> str:
    value = rng.randrange(low, high + 1, step)
    return str(value) if name == "year" else f"{value:,}"


def compose(frame: dict, shared: dict, rng: random.Random) -> dict:
    """One passage of ``frame``: ``{text, key, ref}`` with every slot filled from ``rng``."""
    town, town2 = rng.sample(list(shared["towns"]), 2)
    values: dict[str, str] = {
        "town": town, "town2": town2, "month": rng.choice(shared["months"]),
        "day": rng.choice(shared["days"]), "person": rng.choice(shared["people"]),
    }
    for name, (low, high, step) in (frame.get("numbers") or {}).items():
        values[name] = _number(name, int(low), int(high), int(step), rng)
    slot_keys: dict[str, list[str]] = {}
    for name, options in frame["slots"].items():
        choice = rng.choice(options)
        choice = choice if isinstance(choice, dict) else {"text": choice}
        values[name] = str(choice["text"]).format(**values)
        for field, value in choice.items():
            if field not in ("text", "key"):
                values[f"{name}_{field}"] = str(value).format(**values)
        if "key" in choice:
            slot_keys[name] = [str(k).format(**values) for k in choice["key"]]
    key = [slot_keys[k] if isinstance(k, str) else [str(w) for w in k] for k in frame["key"]]
    text = " ".join(_capitalised(s.format(**values)) for s in frame["text"])
    return {"text": text, "key": key, "ref": _capitalised(frame["ref"].format(**values))}


@cache
def frame_passages(n: int = FRAME_PASSAGES, seed: int = FRAME_SEED) -> tuple[dict, ...]:
    """``n`` distinct passages, frames taken in turn (deterministic; treat as read-only)."""
    data = bank.load("summary_frames")
    frames = data["frames"]
    rng = random.Random(seed)
    out: list[dict] = []
    seen: set[str] = set()
    for draw in range(n * _MAX_DRAWS):
        if len(out) >= n:
            break
        frame = frames[draw % len(frames)]
        item = compose(frame, data, rng)
        if item["text"] in seen:
            continue
        seen.add(item["text"])
        out.append({"id": f"frame-{frame['id']}-{len(out)}", "frame": frame["id"], **item})
    return tuple(out)
