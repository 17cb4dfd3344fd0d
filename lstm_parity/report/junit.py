"""JUnit XML for CI systems: one testcase per model and output (and per comparison side); a failure
carries the numbers, a model that could not be checked is an <error> with its one-line message."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..check import CheckReport
from .text import num, plugin_pairs


def render_junit(results: list[tuple[str, CheckReport | None, int, str | None]], suite: str = "lstm-parity") -> str:
    """`results`: (model name, report or None, exit code, error message or None) per model."""
    root = ET.Element("testsuites", name=suite)
    tests = failures = errors = 0
    for name, report, code, error in results:
        cases = ET.SubElement(root, "testsuite", name=name)
        if report is None:
            case = ET.SubElement(cases, "testcase", classname=name, name="load")
            ET.SubElement(case, "error", message=error or f"exit {code}", type=f"exit{code}").text = error
            tests, errors = tests + 1, errors + 1
            _counts(cases, tests=1, failures=0, errors=1)
            continue
        if report.plugins:  # the user's code computed part of the reference: say whose, before the testcases
            properties = ET.SubElement(cases, "properties")
            for _, text in plugin_pairs(report):
                ET.SubElement(properties, "property", name="plugin", value=text)
        count = fail = 0
        if report.weights is not None:
            case = ET.SubElement(cases, "testcase", classname=name, name="weights bit-identical to Keras")
            count += 1
            if not report.weights.identical:
                ET.SubElement(case, "failure", message="; ".join(report.weights.mismatches[:5]))
                fail += 1
        for comparison in report.comparisons:
            for out in comparison.outputs:
                case = ET.SubElement(cases, "testcase", classname=name, name=f"{out.name} vs {comparison.against}")
                count += 1
                if not out.passed:
                    fail += 1
                    detail = out.shape_mismatch or (
                        f"max abs diff {num(out.max_abs_diff)} at {out.worst_index} (reference "
                        f"{out.reference_at_worst:.7g}, {comparison.against} {out.other_at_worst:.7g}); max rel "
                        f"{num(out.max_rel_diff)}; needs atol >= {num(out.min_atol_to_pass)} with rtol {out.rtol:g}; "
                        f"allowed atol {out.atol:g}"
                        if comparison.profile == "float32" and out.within_tolerance is False
                        else ""
                    )
                    rules = [rule for rule in out.failed_rules if "(float32 profile)" not in rule]
                    detail = "; ".join(part for part in (detail, *rules) if part)  # profile / --require rules
                    ET.SubElement(case, "failure", message=detail).text = detail
        for second in report.independence:
            case = ET.SubElement(cases, "testcase", classname=name, name=f"{second.label} second pass, no reset")
            count += 1
            if not second.passed:
                ET.SubElement(case, "failure", message=second.message).text = second.message
                fail += 1
        if not report.comparisons:
            ET.SubElement(cases, "testcase", classname=name, name="reference ran")
            count += 1
        _counts(cases, tests=count, failures=fail, errors=0)
        tests, failures = tests + count, failures + fail
    _counts(root, tests=tests, failures=failures, errors=errors)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _counts(element: ET.Element, **counts: int) -> None:
    """JUnit's tests/failures/errors attributes."""
    for key, value in counts.items():
        element.set(key, str(value))
