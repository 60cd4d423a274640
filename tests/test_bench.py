"""`cai-bootstrap bench` end to end on the tiny model: every figure measured, ratios derived from them."""

import json

import pytest

from cai_bootstrap.bench import BenchSettings, bench_table, run_bench, save


@pytest.fixture(scope="module")
def tiny_result():
    settings = BenchSettings(model="tiny", gen_prompts=4, gen_batch_size=4, naive_prompts=1, new_tokens=4,
                             train_batch_size=2, train_seq_len=128, train_steps=1, dpo_pairs=2)
    return run_bench(settings, progress_cb=lambda _msg: None)


def test_bench_measures_every_figure_against_its_baseline(tiny_result):
    figures = {f["unit"]: f for f in tiny_result["figures"]}
    assert set(figures) == {"tokens/s", "pairs/s"} and len(tiny_result["figures"]) == 3
    for f in tiny_result["figures"]:
        assert f["value"] > 0 and f["naive"] > 0
        assert f["vs_naive"] == pytest.approx(f["value"] / f["naive"])
    gen, sft = tiny_result["figures"][0], tiny_result["figures"][1]
    assert gen["of_roofline"] == pytest.approx(gen["value"] / gen["roofline"])
    assert sft["roofline"] == pytest.approx(gen["roofline"] / 2)  # 4 x params per training token vs 2 x
    dpo = figures["pairs/s"]
    # TRL's loop-only rate leaves out its construction; ours never does, so that rate is the higher one.
    assert dpo["extra"]["naive_train_loop_only"] > dpo["naive"]
    assert tiny_result["matmul_gflops"]["fp32"] > 0 and tiny_result["model_params"] > 0


def test_bench_result_saves_and_renders(tiny_result, tmp_path):
    path = tmp_path / "bench.json"
    save(tiny_result, path)
    assert json.loads(path.read_text())["figures"][2]["extra"]
    table = bench_table(tiny_result)
    assert table.row_count == 4  # generation, SFT, DPO and DPO's loop-only baseline
