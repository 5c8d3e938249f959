"""Issue 25: a mission reads its input as it goes (never whole) and the language mission,
batched, labels each record as lingua's single-text API labels its text."""

from __future__ import annotations

import json
import tracemalloc

from magpie.tagging.job import TagOptions, run

# Sentences written for this test, each of one language and long enough (more than eight
# words) that the short-text rule of the mission does not apply.
SENTENCES = {
    "EN": [
        "Could you explain how the water cycle moves rain from the ocean to the mountains?",
        "Please write a friendly letter to my neighbour about the noise from the garden party.",
        "What are the most important things to remember when you learn to drive a car?",
    ],
    "FR": [
        "Pourriez-vous m'expliquer comment fonctionne le cycle de l'eau dans la nature ?",
        "Écris une lettre aimable à mon voisin au sujet du bruit de la fête d'hier soir.",
    ],
    "DE": [
        "Kannst du mir bitte erklären, wie der Wasserkreislauf in der Natur genau funktioniert?",
        "Schreibe einen freundlichen Brief an meinen Nachbarn wegen des Lärms der Gartenparty.",
    ],
    "ES": [
        "¿Podrías explicarme cómo funciona el ciclo del agua desde el mar hasta las montañas?",
        "Escribe una carta amable a mi vecino sobre el ruido de la fiesta en el jardín.",
    ],
    "RU": [
        "Объясни, пожалуйста, как вода из океана попадает в горы в виде дождя и снега.",
        "Напиши вежливое письмо соседу о шуме, который был вчера вечером в его саду.",
    ],
    "ZH": [
        "请详细解释一下水循环是如何把海洋里的水带到高山上的。",
        "帮我给邻居写一封礼貌的信，说一说昨天晚上花园聚会的噪音问题。",
    ],
    "JA": [
        "海の水がどのようにして雨や雪になって山に届くのか、詳しく説明してください。",
        "昨日の夜の庭のパーティーの騒音について、隣の人に丁寧な手紙を書いてください。",
    ],
    "KO": [
        "바다의 물이 어떻게 비와 눈이 되어 산에 도착하는지 자세히 설명해 주세요.",
        "어젯밤 정원 파티의 소음에 대해 이웃에게 정중한 편지를 써 주세요.",
    ],
    "AR": [
        "هل يمكنك أن تشرح لي كيف تنتقل مياه البحر إلى الجبال على شكل مطر وثلج؟",
        "اكتب رسالة لطيفة إلى جاري بخصوص الضجيج الذي حدث في حفلة الحديقة أمس.",
    ],
}
CODE = "x = [i**2 for i in range(5)]; print(sum(x))"  # no natural language at all


def _records(n: int) -> tuple[list[dict], list[str | None]]:
    """n records: one or two sentences of one language, every 25th a line of code; and
    the language each is written in."""
    langs = sorted(SENTENCES)
    records, written = [], []
    for i in range(n):
        lang = None if i % 25 == 0 else langs[i % len(langs)]
        if lang is None:
            text = CODE
        else:
            pool = SENTENCES[lang]
            text = pool[i % len(pool)]
            if i % 3:
                text += " " + pool[(i // 3) % len(pool)]
        records.append({"id": i, "instruction": text, "response": "Sure."})
        written.append(lang)
    return records, written


def test_language_mission_on_json_equals_lingua_one_text_at_a_time(tmp_path):
    from lingua import LanguageDetectorBuilder

    records, written = _records(1000)
    src = tmp_path / "x.json"
    src.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    (out,) = run("language", src, TagOptions())

    detector = LanguageDetectorBuilder.from_all_languages().build()
    expected = []
    for record, lang in zip(records, written, strict=True):
        if lang is None:
            tag = {"language": None, "tag_errors": {"language": "too little natural language"}}
        else:
            found = detector.detect_language_of(record["instruction"]).iso_code_639_1.name
            assert found == lang  # the test's sentences are what they say they are
            tag = {"language": found}
        expected.append({**record, **tag})
    with open(out, encoding="utf-8") as f:
        assert json.load(f) == expected


def _peak_of_a_run(tmp_path, n: int) -> int:
    """The peak of Python memory allocated by a language mission over n records of code
    (lingua has nothing to read: the peak is the job's own bookkeeping)."""
    src = tmp_path / f"x{n}.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "instruction": f"f({i}) == {i * 7}", "pad": "-" * 200}))
            f.write("\n")
    tracemalloc.start()
    try:
        (out,) = run("language", src, TagOptions(save_as="jsonl"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with open(out, encoding="utf-8") as f:
        got = [json.loads(line) for line in f]
    assert [r["id"] for r in got] == list(range(n))
    assert {r["language"] for r in got} == {None}
    return peak


def test_tagging_job_reads_its_input_as_it_goes(tmp_path, monkeypatch):
    """No read_records anywhere (the whole file in a list), and four times the records
    do not take four times the memory."""
    import magpie.records
    import magpie.tagging.job

    def whole(*args, **kwargs):
        raise AssertionError("the input was read whole")

    monkeypatch.setattr(magpie.records, "read_records", whole)
    _peak_of_a_run(tmp_path, 100)  # modules a run imports are loaded before measuring
    small, large = _peak_of_a_run(tmp_path, 10_000), _peak_of_a_run(tmp_path, 40_000)
    assert large < 1.5 * small, (small, large)


def test_a_group_chains_missions_each_reading_the_one_before(tmp_path, monkeypatch):
    """Two missions on one model in a group: the second reads the first's output, and the
    model stays loaded for it."""
    from magpie.tagging import GROUPS

    monkeypatch.setitem(GROUPS, "twice", ("language", "language"))
    records, written = _records(60)
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    first, second = run("twice", src, TagOptions(save_as="jsonl"))
    assert (first.name, second.name) == ("x_language.jsonl", "x_language_language.jsonl")
    assert first.read_bytes() == second.read_bytes()
    with open(second, encoding="utf-8") as f:
        assert [json.loads(line)["language"] for line in f] == written
