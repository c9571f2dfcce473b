"""melanoma.bench.rules: ship-rule clauses and the verdict an experiment's decide.py prints."""


def test_a_ship_rule_passes_only_when_every_clause_holds(capsys):
    from melanoma.bench.rules import Clause, change, refused_at_most, site_shift_clause, verdict

    assert change({"a": 0.8, "b": 0.85, "difference": 0.05, "difference_ci": [0.01, 0.09]}) == \
        "0.800 -> 0.850, +0.050 (+0.010 to +0.090)"
    stress = {"families": {"grid": {"refused": 0.05}, "blur": {"refused": 0.2}}}
    assert refused_at_most(stress, {"grid": 0.1}, "grid").ok
    assert not refused_at_most(stress, {"grid": 0.1, "blur": 0.1}, "both").ok
    families = {f: {"refused": 0.0} for f in ("zoom_out", "grid", "blur", "ruler", "bubbles")}
    assert site_shift_clause({"families": families}).ok
    assert not site_shift_clause({"families": {**families, "ruler": {"refused": 0.34}}}).ok  # the bundled: 33.1%
    assert verdict([Clause("a", "1", True)]) and not verdict([Clause("a", "1", True), Clause("b", "2", False)])
    out = capsys.readouterr().out
    assert "FAIL  b: 2" in out and out.count("ships") == 1 and "does not ship" in out
