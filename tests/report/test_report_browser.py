"""The report page in a real browser (Debian's chromium, headless, through selenium): the
page of a real run shows the funnel the files hold, search and tag filters find what
they should, the console stays clean, and hostile record text never runs (issue 27)."""

from __future__ import annotations

import json
import re
from collections import Counter

from report_browser import console_errors, load
from report_inputs import (  # noqa: F401  (fixtures)
    HOSTILE,
    browser,
    hostile_file,
    read_json_records,
    run_folder,
    tagged_file,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from magpie.report_page import build_report

SUMMARY = r"^\[([^\]]+)\] (?:shards \d+, )?records in (\d+), (?:out|kept) (\d+)"


def funnel_rows(driver) -> dict[str, tuple[str, str, str]]:
    """{output file name: (stage, records in, records out)} as the page shows them."""
    rows = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#funnel-table tbody tr"):
        cells = {
            c.get_attribute("class").split()[0]: c.text for c in tr.find_elements(By.TAG_NAME, "td")
        }
        rows[cells["file"]] = (cells["stage"], cells["records-in"], cells["records-out"])
    return rows


def shown_ids(driver) -> list[str]:
    return [
        a.get_attribute("data-id") for a in driver.find_elements(By.CSS_SELECTOR, "article.record")
    ]


def type_search(driver, text: str) -> None:
    """Type into the search box (as input events do) and wait out its debounce."""
    driver.execute_script(
        "const box = document.getElementById('search'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input'));"
        "return new Promise(r => setTimeout(r, 300));",
        text,
    )


def test_the_run_page_shows_the_funnel_the_files_hold(run_folder, browser):  # noqa: F811
    page = run_folder / "report.html"
    load(browser, page)
    assert console_errors(browser) == []
    files = {p.name: p for p in run_folder.iterdir() if p.suffix in (".json", ".jsonl")}
    ins = next(n for n in files if n.endswith("_ins.json"))
    res = next(n for n in files if n.endswith("_ins_res.json"))
    tagged = next(n for n in files if n.endswith("_res_language.json"))
    kept = next(n for n in files if n.endswith("_filtered.jsonl"))
    rejected = next(n for n in files if n.endswith("_rejected.jsonl"))
    count = {n: len(read_json_records(p)) for n, p in files.items()}
    rows = funnel_rows(browser)
    order = [r[0] for r in rows.values()]
    assert order == ["gen_ins", "gen_res", "unitag language", "concat", "gen_dis", "filter"]

    def num(n: int) -> str:
        return f"{n:,}"

    assert rows[ins][2] == num(count[ins])
    assert rows[res][1:] == (num(count[ins]), num(count[res]))
    assert rows[tagged][1:] == (num(count[res]), num(count[tagged]))
    assert rows["run_sharegpt.jsonl"][2] == num(count["run_sharegpt.jsonl"])
    distance = next(n for n in files if n.endswith("_distance.jsonl"))
    assert rows[distance][1:] == (num(count["run_sharegpt.jsonl"]), num(count[distance]))
    assert rows[kept][1:] == (num(count[distance]), num(count[kept]))
    assert count[kept] + count[rejected] == count[distance]
    # The same numbers as each stage's summary line ("[stage] records in X, out Y").
    printed = (run_folder / "run.log").read_text(encoding="utf-8")
    summaries = {
        m[1]: (num(int(m[2])), num(int(m[3]))) for m in re.finditer(SUMMARY, printed, re.M)
    }
    assert summaries == {stage: (n_in, n_out) for stage, n_in, n_out in rows.values()}
    # The filter's rejections by rule, counted from the rejects file.
    reasons = Counter(r["filter_reason"] for r in read_json_records(files[rejected]))
    shown = browser.find_element(By.CSS_SELECTOR, "tr[data-stage=filter] td.rejected").text
    for rule, n in reasons.items():
        assert f"{rule}: {n}" in shown
    # The records shown are the filter's: kept and rejected, every one in the sample.
    total = count[kept] + count[rejected]
    assert f"all {total} records" in browser.find_element(By.ID, "distributions").text.lower()
    select = Select(browser.find_element(By.ID, "filter-filter_reason"))
    select.select_by_value("kept")
    info = browser.find_element(By.ID, "page-info").text
    assert f"of {count[kept]} matching" in info
    # A search finds a known record by a phrase of its answer.
    answered = [
        (r, t["value"])
        for r in read_json_records(files[distance])
        for t in r["conversations"]
        if t["from"] == "gpt" and len(t["value"].strip()) > 10
    ]
    record, answer = answered[len(answered) // 2]
    select.select_by_value("")
    phrase = max(answer.split("\n"), key=len)[:30]
    type_search(browser, phrase)
    assert record["conversation_id"] in shown_ids(browser)
    assert console_errors(browser) == []


def test_search_and_tag_filters_show_only_matching_records(tagged_file, tmp_path, browser):  # noqa: F811
    page = build_report([tagged_file], tmp_path / "page.html", sample=1000)
    load(browser, page)
    records = read_json_records(tagged_file)
    # Difficulty "hard": exactly the records tagged so (all 300 are in the sample).
    Select(browser.find_element(By.ID, "filter-difficulty")).select_by_value("hard")
    want = [r["conversation_id"] for r in records if r["difficulty"] == "hard"]
    info = browser.find_element(By.ID, "page-info").text
    assert f"of {len(want)} matching" in info
    assert set(shown_ids(browser)) == set(want[:50])
    for article in browser.find_elements(By.CSS_SELECTOR, "article.record"):
        assert (
            article.find_element(By.CSS_SELECTOR, "li[data-tag=difficulty]").text
            == "difficulty hard"
        )
    # Null is a value one can filter on: the untagged records.
    Select(browser.find_element(By.ID, "filter-difficulty")).select_by_value("(none)")
    nulls = [r for r in records if r["difficulty"] is None]
    assert f"of {len(nulls)} matching" in browser.find_element(By.ID, "page-info").text
    Select(browser.find_element(By.ID, "filter-difficulty")).select_by_value("")
    # Search: one record's own words.
    type_search(browser, "Question number 217:")
    assert shown_ids(browser) == ["tag_217"]
    type_search(browser, "")
    # Paging through the 300.
    browser.find_element(By.ID, "next").click()
    assert browser.find_element(By.ID, "page-info").text.startswith("51–100 of 300")
    # Flags: the records with an instruction flag.
    Select(browser.find_element(By.ID, "filter-flag")).select_by_value(
        "instruction_flag: unfinished"
    )
    flagged = {r["conversation_id"] for r in records if r["instruction_flag"]}
    assert set(shown_ids(browser)) == flagged
    Select(browser.find_element(By.ID, "filter-flag")).select_by_value("")
    # A near-duplicate group opens from one of its records.
    type_search(browser, "Question number 2:")
    browser.find_element(By.CSS_SELECTOR, "article[data-id=tag_2] button.group").click()
    assert sorted(shown_ids(browser)) == ["tag_1", "tag_2", "tag_3"]  # the search cleared
    # Reasoning is folded.
    browser.find_element(By.ID, "clear-group").click()
    details = browser.find_element(By.CSS_SELECTOR, "article[data-id=tag_0] details.reasoning")
    assert details.get_attribute("open") is None
    # The charts' counts are every record's: difficulty bars against a count by hand.
    figure = browser.find_element(By.CSS_SELECTOR, "figure[data-field=difficulty]")
    nulls = sum(r["difficulty"] is None for r in records)
    assert f"{nulls} null or cannot judge" in figure.text
    assert console_errors(browser) == []


def test_hostile_records_are_shown_as_text_and_never_run(hostile_file, tmp_path, browser):  # noqa: F811
    page = build_report([hostile_file], tmp_path / "hostile.html")
    html = page.read_text(encoding="utf-8")
    assert "window.__pwned" in html and "<script>window.__pwned" not in html
    load(browser, page)
    assert browser.execute_script("return window.__pwned") is None
    body = browser.find_element(By.TAG_NAME, "body")
    # Every button, every summary, every option: clicking through runs nothing.
    buttons = len(browser.find_elements(By.CSS_SELECTOR, "button.group"))
    assert buttons == len(HOSTILE)
    for i in range(buttons):  # each click draws the list anew: find the button again
        browser.find_elements(By.CSS_SELECTOR, "button.group")[i].click()
        browser.find_element(By.ID, "clear-group").click()
    for summary in browser.find_elements(By.CSS_SELECTOR, "details summary"):
        summary.click()
    for field in ("language", "llama_guard_2", "flag"):  # free values: in charts and filters
        select = Select(browser.find_element(By.ID, f"filter-{field}"))
        for option in [o.get_attribute("value") for o in select.options]:
            select.select_by_value(option)
            if option not in ("", "flagged", "unflagged"):  # each value is one record's
                assert len(shown_ids(browser)) == 1, option
        select.select_by_value("")
    assert browser.execute_script("return window.__pwned") is None
    # No element the data could have made: no image, link, inline handler or extra script.
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.find_elements(By.TAG_NAME, "a") == []
    assert browser.find_elements(By.TAG_NAME, "iframe") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 2  # data and the page's
    # The text shows literally, U+2028 included (textContent, not the rendered text).
    texts = browser.execute_script(
        "return [...document.querySelectorAll('.turn .text')].map(e => e.textContent)"
    )
    for text in HOSTILE:
        assert f"{text} instruction" in texts and f"{text} response" in texts
        assert f"{text} reasoning" in texts
    ids = {a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "article")}
    assert ids == {f"{t} #{i}" for i, t in enumerate(HOSTILE)}
    assert "<script>window.__pwned=1</script> instruction" in body.text
    assert console_errors(browser) == []
    data = json.loads(browser.execute_script("return document.getElementById('data').textContent"))
    assert data["sample"][0]["turns"][0][1] == f"{HOSTILE[0]} instruction"  # unchanged
