"""Issue 20: both sides of the harm boundary (look-alikes), the refusal-share mixture, the dev split."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from cai_bootstrap.config import RunSettings, StageSpec
from cai_bootstrap.engines.base import Engine, SamplingParams
from cai_bootstrap.jsonl import read_jsonl, write_jsonl
from cai_bootstrap.stages import constitutional_stage as cai
from cai_bootstrap.stages.constitutional_stage.mixture import MIXTURE_FILE, mix_counts, refusal_mix
from cai_bootstrap.stages.context import RecordSink, StageContext
from cai_bootstrap.tasks.checks import contains_any, normalize, tokens
from cai_bootstrap.tasks.constitutional import dev_instances, lookalike_topics, record_side

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = {
    "redteam_seeds": str(FIXTURES / "seeds_redteam_lookalike_small.yaml"),
    "ordinary_seeds": str(FIXTURES / "seeds_ordinary_small.yaml"),
}
ROLES = {
    "prompt_writer": "stage-3", "answerer": "stage-2", "critic": "stage-4", "reviser": "stage-5",
    "judge": "base", "refusal_writer": "base",
}
REFUSAL = "I'm sorry, but I can't help with that, because it could hurt people. I can tell you about safety instead."
DECLINE = "I can't help with that request."


def form(text: str) -> str:
    """The opening word of a request ("how", "what", "write", ...): its form."""
    first = tokens(text)[0]
    return {"whats": "what", "hows": "how"}.get(first, first)


# --------------------------------------------------------------------------- seeds


def test_every_category_has_matched_lookalikes_that_keep_its_keywords() -> None:
    categories = cai.load_seed_topics("redteam")
    twins = {t.lookalike_of: t for t in lookalike_topics(categories)}
    assert set(twins) == {c.name for c in categories}
    for cat in categories:
        twin = twins[cat.name]
        assert twin.side == "look-alike" and twin.kind == "ordinary" and cat.side == "harmful"
        for split in ("train", "heldout", "dev"):
            harmful, harmless = getattr(cat, split), getattr(twin, split)
            assert len(harmless) >= len(harmful) >= 1, (cat.name, split)
            # a look-alike in the same form for every harmful request: the form does not tell them apart
            missing = Counter(form(s) for s in harmful) - Counter(form(s) for s in harmless)
            assert not missing, (cat.name, split, missing)
            for text in harmless:  # ... nor the vocabulary
                assert contains_any(text, cat.keywords, inflect=True), (cat.name, text)


def test_form_does_not_predict_the_label_across_the_seed_bank() -> None:
    categories = cai.load_seed_topics("redteam")
    harmful = Counter(form(s) for c in categories for s in c.train + c.heldout + c.dev)
    harmless = Counter(form(s) for t in lookalike_topics(categories) for s in t.train + t.heldout + t.dev)
    for f, n in harmful.items():
        assert harmless[f] >= n, (f, n, harmless[f])


def test_seed_splits_are_disjoint_across_sides() -> None:
    categories = cai.load_seed_topics("redteam")
    every = categories + lookalike_topics(categories) + cai.load_seed_topics("ordinary")
    splits = {s: [normalize(x) for t in every for x in getattr(t, s)] for s in ("train", "heldout", "dev")}
    for name, texts in splits.items():
        assert len(set(texts)) == len(texts), name
    assert not set(splits["train"]) & (set(splits["heldout"]) | set(splits["dev"]))
    assert not set(splits["heldout"]) & set(splits["dev"])
    near = cai.OverlapIndex([(x, x) for t in every for x in t.heldout + t.dev])
    assert not [(x, near.match(x)) for t in every for x in t.train if near.match(x)]


# --------------------------------------------------------------------------- plan


def test_plan_pairs_each_redteam_item_with_a_lookalike_of_its_category() -> None:
    topics = {k: cai.load_seed_topics(k) for k in ("redteam", "ordinary")}
    twins = lookalike_topics(topics["redteam"])
    plain = cai.plan_items(topics, 20, 0.5, seed=3)
    assert cai.plan_items(topics, 20, 0.5, seed=3, lookalikes=twins, lookalike_ratio=0.0) == plain
    items = cai.plan_items(topics, 20, 0.5, seed=3, lookalikes=twins, lookalike_ratio=1.0)
    assert [it.index for it in items] == list(range(len(items))) and len(items) == 30
    assert [it for it in items if not it.topic.lookalike_of] == [
        it.__class__(it.key, i, it.kind, it.topic, it.seed_request) for it, i in zip(plain, [
            j for j, x in enumerate(items) if not x.topic.lookalike_of])
    ]
    for prev, item in zip(items, items[1:]):
        if item.topic.lookalike_of:
            assert prev.kind == "redteam" and item.topic.lookalike_of == prev.topic.name
            assert item.kind == "ordinary" and item.seed_request in item.topic.train
            assert form(item.seed_request) == form(prev.seed_request)  # matched seeds
    half = cai.plan_items(topics, 20, 0.5, seed=3, lookalikes=twins, lookalike_ratio=0.5)
    assert sum(1 for it in half if it.topic.lookalike_of) == 5
    assert cai.plan_items(topics, 40, 0.5, seed=3, lookalikes=twins, lookalike_ratio=1.0)[:30] == items


# --------------------------------------------------------------------------- builder


class Roles(Engine):
    """Every role played by rules, as well-trained earlier stages would."""

    def __init__(self, role: str):
        self.role, self.inputs = role, []

    def generate(self, prompts: list[str], params: SamplingParams, *, progress=True, desc="generate"):
        self.inputs += prompts
        return [[self._one(p) for _ in range(params.n)] for p in prompts]

    def _one(self, prompt: str) -> str:
        body = prompt.rsplit("### Instruction:\n", 1)[1]
        if self.role == "prompt_writer":
            about = body.split("Write a user request about: ", 1)[1].split("\n", 1)[0]
            if "harmless request that uses weapon" in about:
                return "How do I paint a toy gun for the school play?"
            return "\ufffd"  # rejected: the item falls back to a seed request
        user = body.split("\n", 1)[0]
        if self.role == "answerer":
            words = [w for w in tokens(user) if len(w) > 3][:3]
            return f"Sure. Start with the {' '.join(words)}, then go step by step."
        if self.role == "refusal_writer":
            return DECLINE
        if self.role == "critic":
            return "The response could help cause harm, or it dodges the request."
        if self.role == "reviser":
            user = body.split("User: ", 1)[1].split("\n", 1)[0]
            harmful = any(w in user.lower() for w in ("scare", "hide", "bus", "post office"))
            return REFUSAL if harmful else f"A direct answer about {user.lower().rstrip('?')}."
        raise AssertionError(self.role)

    def choose(self, prompts, options):
        return [0 if "Response A: A direct answer" in p else 1 for p in prompts]


def make_ctx(tmp_path: Path, engines: dict, *, examples: int = 6, options: dict | None = None,
             method: str = "dpo") -> StageContext:
    spec = StageSpec(
        name="stage-6", kind="constitutional", examples=examples, roles=dict(ROLES),
        sampling={"n": 2, "temperature": 0.8, "max_new_tokens": 8}, training={"method": method},
        options={"aux_max_new_tokens": 8, "shots": 1, "oversample": 2, **SEEDS, **(options or {})},
    )
    return StageContext(
        spec=spec, settings=RunSettings(model="tiny", preset="tiny"), stage_dir=tmp_path,
        sink=RecordSink(tmp_path / "data.jsonl"), engine_for=engines.__getitem__,
        role_name=ROLES.__getitem__, attempt=0, chunk_size=4,
    )


def run_build(ctx: StageContext) -> list[dict]:
    try:
        cai.build(ctx)
    finally:
        ctx.sink.close()
    return read_jsonl(ctx.stage_dir / "data.jsonl")


def test_builder_trains_both_sides_of_the_boundary(tmp_path: Path) -> None:
    engines = {role: Roles(role) for role in ROLES}
    records = run_build(make_ctx(tmp_path, engines, options={"lookalikes": 1.0}))
    assert {r["side"] for r in records} == {"harmful", "look-alike", "ordinary"}
    for rec in records:
        assert rec["side"] == record_side(rec)
        assert (rec["side"] == "harmful") == (rec["family"] == "redteam")
    harmful = [r for r in records if r["side"] == "harmful" and r["kept"]]
    twins = [r for r in records if r["side"] == "look-alike"]
    assert harmful and twins and all(r["kept"] for r in twins)
    for rec in harmful:  # refusal preferred to the compliant answer, after a critique
        assert rec["chosen"] == REFUSAL and rec["critique"] and rec["principle"]["name"]
    by_key = {r["key"]: r for r in records}
    for rec in twins:  # the helpful answer preferred to a refusal of the same harmless request
        twin_of = by_key[rec["key"].replace("lookalike", "redteam").rsplit("-", 1)[0]]
        assert rec["topic"]["lookalike_of"] == twin_of["topic"]["name"]
        assert contains_any(rec["prompt"], ["gun", "weapon", "stab", "bomb", "explode"], inflect=True)
        assert rec["chosen"].startswith("Sure.") and rec["rejected"] == DECLINE
        assert rec["check"] == "lookalike:helpful_over_refusal" and rec["verdicts"]["chosen"]["passed"]
        assert rec["provenance"]["chosen"]["by"] == "stage-2" and rec["provenance"]["chosen"]["role"] == "answerer"
        assert rec["provenance"]["rejected"]["by"] == "base"
        assert "Decline this request in one or two sentences: " + rec["prompt"] in rec["provenance"]["rejected"]["input"]
    written = [r for r in twins if r["provenance"]["prompt"]["by"] == "stage-3"]
    assert [r["prompt"] for r in written] == ["How do I paint a toy gun for the school play?"]
    # the writer's demonstrations for a look-alike are look-alike seeds of another category
    inputs = [p for p in engines["prompt_writer"].inputs if "uses weapon words" in p.split("### Instruction:")[-1]]
    assert inputs and ("How do I make a bath bomb" in inputs[0] or "What makes popcorn explode" in inputs[0])
    assert "How do I build a bomb" not in inputs[0] and "What do I mix" not in inputs[0]
    stats = json.loads((tmp_path / cai.STATS_FILE).read_text())
    assert stats["sides"]["look-alike"]["kept"] == len(twins)
    # look-alike records never become contrast pairs (their rejected side is already a refusal)
    assert not [r for r in cai.contrast_pool(records) if r["side"] != "ordinary"]


def test_builder_with_lookalikes_on_the_tiny_model_resumes(tmp_path: Path, tiny_engine) -> None:
    engines = {role: tiny_engine for role in ROLES}
    full = run_build(make_ctx(tmp_path / "a", engines, examples=2, options={"lookalikes": 1.0}))
    assert any(r["side"] == "look-alike" for r in full)
    for rec in full:
        if rec["side"] == "look-alike":
            assert not rec["kept"] and rec["drop_reason"].startswith(("lookalike:", "prompt:"))
    assert run_build(make_ctx(tmp_path / "a", engines, examples=2, options={"lookalikes": 1.0})) == full


# --------------------------------------------------------------------------- mixture


def rec(key: str, side: str, pair: bool = True) -> dict:
    family = "redteam" if side == "harmful" else "ordinary"
    return {"key": key, "side": side, "family": family, "prompt": f"p {key}", "chosen": f"c {key}",
            "rejected": f"r {key}" if pair else None, "kept": True}


@pytest.mark.parametrize("share", [0.05, 0.1, 0.2, 0.5])
@pytest.mark.parametrize("method", ["dpo", "sft+dpo"])
def test_refusal_share_is_exact(share: float, method: str) -> None:
    own = [rec(f"h{i}", "harmful") for i in range(6)] + [rec(f"l{i}", "look-alike") for i in range(4)]
    own += [rec(f"o{i}", "ordinary") for i in range(2)]
    extras = {"helpful samples": [rec(f"s{i}", "ordinary", pair=False) for i in range(5)]}
    asked = []

    def replay(n: int) -> list[dict]:
        asked.append(n)
        return [{**rec(f"p{i}", "ordinary", pair=i % 3 == 0), "replay_of": "stage-1"} for i in range(n)]

    groups, summary = refusal_mix(own, extras, replay, share, method)
    rows = [r for rows in groups.values() for r in rows]
    refusals = sum(record_side(r) == "harmful" for r in rows)
    assert refusals == summary["refusals"] and len(rows) == summary["records"]
    assert refusals == round(share * len(rows)) and refusals >= 1
    assert len({r["key"] for r in rows}) == len(rows)
    if method == "dpo":  # DPO takes pairs only: SFT-only records never count
        assert all(r.get("rejected") for r in rows) and not groups["helpful samples"]
    # the helpful side: look-alikes first, then ordinary pairs, then extras, then replay
    helpful = [r for r in rows if record_side(r) != "harmful"]
    order = {"look-alike": 0, "ordinary": 1}
    own_helpful = [r for r in groups["own"] if record_side(r) != "harmful"]
    assert [order[record_side(r)] for r in own_helpful] == sorted(order[record_side(r)] for r in own_helpful)
    if groups["replay"]:
        assert len(own_helpful) == 6 and all(r["side"] == "ordinary" for r in groups["replay"])
    assert summary["by_side"]["harmful"] == refusals and len(helpful) == summary["helpful"]
    assert summary["actual_share"] == pytest.approx(refusals / len(rows))
    if share <= 0.2:
        assert refusals == 6 and asked  # every refusal kept: replay filled the helpful side


def test_refusal_share_leaves_refusals_out_when_helpful_records_run_short() -> None:
    own = [rec(f"h{i}", "harmful") for i in range(10)] + [rec("l0", "look-alike")]
    from cai_bootstrap.errors import ConfigError

    with pytest.raises(ConfigError, match="too few for even one refusal"):  # never a refusal-only set
        refusal_mix(own, {}, lambda n: [], 0.1, "dpo")
    groups, summary = refusal_mix(own, {}, lambda n: [rec(f"p{i}", "ordinary") for i in range(min(n, 17))], 0.1, "dpo")
    assert summary["refusals"] == 2 and summary["records"] == 20 and "left out" in summary["note"]
    groups, summary = refusal_mix([rec("l0", "look-alike")], {}, lambda n: [], 0.1, "dpo")
    assert summary["refusals"] == 0 and groups["own"] and "no refusal" in summary["note"]


def test_mix_counts_is_exact_everywhere() -> None:
    for share in (0.03, 0.05, 0.1, 0.2, 1 / 3, 1.0):
        for refusals in range(0, 40):
            for helpful in range(0, 200, 7):
                r, h = mix_counts(refusals, helpful, share)
                assert r <= refusals and h <= helpful
                if r:
                    assert r == round(share * (r + h))
                    if r < refusals:  # one more refusal would need more helpful records than exist
                        assert round((r + 1) / share) - (r + 1) > helpful
                else:
                    assert refusals == 0 or math.floor(1 / share + 0.5) - 1 > helpful


def test_the_kind_mixes_by_refusal_share_and_writes_the_mixture(tmp_path: Path) -> None:
    from cai_bootstrap.runs.layout import StagePaths

    paths = StagePaths(tmp_path, "stage-6")
    paths.data.parent.mkdir(parents=True)
    own = [rec(f"h{i}", "harmful") for i in range(2)] + [rec("l0", "look-alike")]
    write_jsonl(paths.data, own)

    def spec(**options):
        return StageSpec.model_validate({"name": "stage-6", "kind": "constitutional", "families": ["redteam", "ordinary"],
                                         "examples": 3, "heldout": 2, "replay": 1.0, "training": {"method": "sft+dpo"},
                                         "options": options})

    def replay(n: int) -> list[dict]:
        return [{**rec(f"p{i}", "ordinary", pair=False), "replay_of": "stage-1"} for i in range(n)]

    kind = cai.ConstitutionalStage()
    default = kind.training_mix(spec(), paths, own, replay, 0)
    assert default["own"] == own and len(default["replay"]) == 3 and not (paths.root / MIXTURE_FILE).exists()
    mixed = kind.training_mix(spec(refusal_share=0.1), paths, own, replay, 0)
    rows = [r for rows in mixed.values() for r in rows]
    assert len(rows) == 20 and sum(record_side(r) == "harmful" for r in rows) == 2
    summary = json.loads((paths.root / MIXTURE_FILE).read_text())
    assert summary["records"] == 20 and summary["refusal_share"] == 0.1 and summary["by_source"]["replay"] == 17


# --------------------------------------------------------------------------- dev split


class Refuser(Engine):
    """Refuses the requests in ``refuse`` (all, when None), answers the rest."""

    def __init__(self, refuse: set[str] | None = None):
        self.refuse, self.calls = refuse, 0

    def generate(self, prompts, params, *, progress=True, desc="generate"):
        self.calls += 1
        out = []
        for p in prompts:
            user = p.split("### Instruction:\n", 1)[1].split("\n", 1)[0]
            no = self.refuse is None or user in self.refuse
            out.append(["I'm sorry, I can't help with that." if no else "Here you go: a useful answer."])
        return out


def test_dev_split_is_held_out_seeds_of_both_sides_never_trained_on(tmp_path: Path) -> None:
    dev = dev_instances()
    categories = cai.load_seed_topics("redteam")
    assert Counter(i.family for i in dev) == {"redteam": 26, "ordinary": 26}
    assert {i.instruction for i in dev} == {s for c in categories for s in c.dev} | {
        s for t in lookalike_topics(categories) for s in t.dev
    }
    from cai_bootstrap.stages.constitutional_stage.items import protected_prompts

    protected, _ = protected_prompts(
        {"redteam": categories, "ordinary": cai.load_seed_topics("ordinary")}, False, None, lookalike_topics(categories)
    )
    assert all(protected.match(i.instruction) for i in dev)  # a written prompt close to one is rejected


def test_dev_rates_measure_discrimination_and_resume(tmp_path: Path, tiny_engine) -> None:
    from cai_bootstrap.stages.constitutional_stage.evaluate import dev_rates

    dev = dev_instances(SEEDS["redteam_seeds"])
    assert len(dev) == 4
    everything = dev_rates(Refuser(), "m", dev, tmp_path / "all.jsonl", 8, False)
    assert everything == {"unsafe_refused": 100.0, "safe_refused": 100.0, "discrimination": 0.0}
    harmful = {i.instruction for i in dev if i.family == "redteam"}
    engine = Refuser(harmful)
    good = dev_rates(engine, "m", dev, tmp_path / "good.jsonl", 8, False)
    assert good == {"unsafe_refused": 100.0, "safe_refused": 0.0, "discrimination": 100.0}
    calls = engine.calls
    assert dev_rates(engine, "m", dev, tmp_path / "good.jsonl", 8, False) == good and engine.calls == calls
    tiny = dev_rates(tiny_engine, "tiny", dev, tmp_path / "tiny.jsonl", 4, False)
    assert set(tiny) == {"unsafe_refused", "safe_refused", "discrimination"}
    assert tiny["discrimination"] == tiny["unsafe_refused"] - tiny["safe_refused"]


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("curriculum, stage", [("skills", "stage-6"), ("tasks", "stage-3")])
def test_standard_preset_trains_both_sides_in_a_helpful_dominant_mix(curriculum: str, stage: str) -> None:
    from cai_bootstrap.config import PACKAGE_DIR, load_curriculum

    path = str(PACKAGE_DIR / "curricula" / f"{curriculum}.yaml")
    specs = {p: next(s for s in load_curriculum(path, p).stages if s.name == stage) for p in ("tiny", "quick", "standard")}
    std = cai.stage_options(specs["standard"])
    assert std.lookalikes >= 1.0 and std.refusal_share == 0.1 and std.dev_split
    assert specs["standard"].training.method == "sft+dpo" and "refusal_writer" in specs["standard"].roles
    quick = cai.stage_options(specs["quick"])  # quick stays as measured
    assert quick.lookalikes == 0 and quick.refusal_share is None and not quick.dev_split
    tiny = cai.stage_options(specs["tiny"])
    assert tiny.lookalikes > 0 and tiny.refusal_share is not None and tiny.dev_split
    full = cai.stage_options(load_curriculum(path, "full").stages[-1])  # unmeasured: unchanged
    assert full.lookalikes == 0 and full.refusal_share is None
