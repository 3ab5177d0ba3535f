from dgm_operator.plugin import report


def cand(name, parent=None, phase="Rejected", score=None, ts="2026-01-01T00:00:00Z", revision=None):
    st = {"phase": phase}
    if score is not None:
        st["validation"] = {"improvementScore": score}
    if revision:
        st["revision"] = revision
    return {"metadata": {"name": name, "creationTimestamp": ts}, "spec": {"parent": parent}, "status": st}


CANDS = [cand("a", score=0.1, phase="Applied", ts="t1", revision=2), cand("b", parent="a", score=-0.2, ts="t2"),
         cand("c", parent="a", phase="Failed", ts="t3"), cand("d", parent="gone", score=0.3, ts="t4"),
         cand("e", phase="Proposed", ts="t5")]


def test_lineage_hangs_unknown_parents_off_the_baseline():
    assert report.lineage(CANDS) == {"": ["a", "d", "e"], "a": ["b", "c"]}


def test_phase_counts():
    assert report.phase_counts(CANDS) == {"Applied": 1, "Failed": 1, "Proposed": 1, "Rejected": 2}


def test_chart_plots_each_evaluated_candidate_and_the_best_so_far():
    svg = report.score_chart(CANDS)
    assert svg.count("<circle") == 3
    assert "b: -0.2000 (Rejected)" in svg
    assert svg.count("<polyline") == 1


def test_tree_has_a_row_per_candidate_and_the_baseline():
    svg = report.tree_svg(CANDS)
    assert svg.count("<text") == len(CANDS) + 1
    assert "a  Applied  +0.1000  rev 2" in svg


def test_html_report_is_self_contained():
    agent = {"metadata": {"name": "ag", "namespace": "ns"},
             "status": {"currentRevision": 2, "baseline": {"metrics": [{"name": "accuracy", "value": 0.5}]},
                        "revisions": [{"revision": 1}, {"revision": 2, "candidate": "a", "score": 0.1}]}}
    page = report.render_html(agent, CANDS)
    assert page.startswith("<!doctype html>") and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "best candidate d (+0.3000)" in page
    assert "<td>2</td><td>a</td>" in page
