"""Evaluation: verifiers, judges, gates, and the public benchmarks (IFEval, XSTest, AdvBench).

Submodules are imported directly (``from cai_bootstrap.evaluation.benchmarks import eval_ifeval``)
so that importing this package stays cheap.
"""
