"""Issue 21: languages written without spaces (and with their own punctuation) get a
language; code, numbers and gibberish still get none; colon and question-mark rules know
the full-width and other scripts' marks."""

from __future__ import annotations

import pytest

# What each sentence is (written for this test), not what the code prints.
SENTENCES = {
    "ZH": [
        "你好，请介绍一下北京的历史。",  # issue 21
        "请帮我把这段话翻译成英文，谢谢！",
        "我想学做饭,你能推荐几道简单的家常菜吗?",  # ASCII punctuation, no spaces
        # traditional characters
        "請問臺灣最高的山是哪一座？它有多高？",
        "我們明天要去圖書館借幾本關於歷史的書。",
    ],
    "JA": [
        "日本の首都はどこですか？東京について詳しく説明してください。",  # issue 21
        "猫が好きですか？私は毎日猫と遊んでいます。",
        "「こんにちは」は英語で何と言いますか？",
    ],
    "KO": [
        "한국의 수도는 어디인가요?서울에 대해 자세히 설명해 주세요.",
        "김치를 만드는 방법을 알려주세요. 재료는 무엇이 필요한가요?",
    ],
    "TH": [
        "ช่วยอธิบายประวัติศาสตร์ของกรุงเทพมหานครให้หน่อยครับ",
        "วันนี้อากาศร้อนมาก ฉันอยากไปว่ายน้ำที่ทะเล",
    ],
    "AR": [
        "ما هي عاصمة فرنسا؟ أريد أن أعرف المزيد عن تاريخها.",
        "اكتب قصيدة قصيرة عن البحر، من فضلك.",
    ],
    "HI": [  # vowel signs are combining marks: every word but a few was dropped before
        "भारत की राजधानी क्या है? कृपया इसके इतिहास के बारे में बताइए।",
        "मुझे एक छोटी कहानी सुनाइए।",
    ],
    "FA": ["می‌خواهم درباره‌ی تاریخ ایران بیشتر بدانم."],  # zero-width non-joiners
    "HE": ["מה הבירה של ישראל? ספר לי על ההיסטוריה שלה."],
    "RU": [
        "Расскажи, пожалуйста, об истории Москвы… Что там посмотреть?",
        "Расскажи мне сказку про кота.",
    ],
    "EL": [
        "Ποια είναι η πρωτεύουσα της Ελλάδας; Πες μου για την ιστορία της.",
        "Γράψε ένα σύντομο ποίημα για τη θάλασσα.",
    ],
}
CASES = [(code, text) for code, texts in SENTENCES.items() for text in texts]


def test_each_script_gets_its_language():
    from magpie.tagging.language import detect_language

    found = detect_language([text for _, text in CASES])
    assert found == [(code, None) for code, _ in CASES]


def test_the_tagger_stores_the_code_in_the_language_field():
    from magpie.tagging.inputs import Conversation
    from magpie.tagging.language import LanguageTagger

    texts = [SENTENCES["ZH"][0], SENTENCES["JA"][0], SENTENCES["TH"][0]]
    items = [(k, Conversation([("user", t)])) for k, t in enumerate(texts)]
    out = {k: (fields, reason) for k, fields, reason in LanguageTagger().tag("language", items)}
    assert out == {
        0: ({"language": "ZH"}, None),
        1: ({"language": "JA"}, None),
        2: ({"language": "TH"}, None),
    }


@pytest.mark.parametrize(
    "text, words",
    [
        ("你好，请介绍一下北京的历史。", "你好 请介绍一下北京的历史"),
        ("東京(Tokyo)について", "東京 Tokyo について"),
        ("用Python写一个函数", "用 Python 写一个函数"),
        ("北京有2000多万人口。", "北京有 多万人口"),
        ("नमस्ते, आप कैसे हैं?", "नमस्ते आप कैसे हैं"),
        ("print(sum(range(10)))", ""),
        ("see https://example.com/a?b=1 now", "see now"),
    ],
)
def test_natural_text_splits_unspaced_runs_and_keeps_the_code_rule(text, words):
    from magpie.tagging.language import natural_text

    assert natural_text(text)[0] == words


def test_counts_per_script():
    from magpie.tagging.language import CJK_LETTERS, natural_text

    # a Han character is a word of CJK_LETTERS letters
    assert natural_text("你好吗")[1:] == (3, 3 * CJK_LETTERS)
    # kana and Thai letters (vowel and tone marks included) count one each, and a word
    # per CJK_LETTERS of them
    assert natural_text("こんにちは")[1:] == (2, 5)
    assert natural_text("สวัสดี")[1:] == (2, 6)
    assert natural_text("日本の首都")[1:] == (4 + 1, 4 * CJK_LETTERS + 1)
    # a Hangul run is a word of as many letters as its syllables have jamo
    assert natural_text("안녕하세요")[1:] == (1, 12)
    # combining marks of Devanagari are letters of the word
    assert natural_text("कैसे")[1:] == (1, 4)


@pytest.mark.parametrize(
    "text",
    [
        "你好",  # one greeting
        "こんにちは",  # one word
        "สวัสดี",
        "OK 好",
        "12345，67890。",
        "x = 1；y = 2。",
        "print(sum(range(10)))",
        "https://example.com/path?q=1",
        "안녕하세요",
        "ありがとう。",
        "<div>北京</div>",
        "?!?! …… ？？",
        "asdf；qwer。",
    ],
)
def test_short_mixed_code_and_gibberish_still_get_null_with_the_reason(text):
    from magpie.tagging.language import TOO_LITTLE, detect_language

    assert detect_language([text]) == [(None, TOO_LITTLE)]


def test_a_script_lingua_does_not_know_is_undetectable_not_a_guess():
    # Khmer and Lao: lingua gives every language confidence 0; the short-text rule used
    # to take the first common language of that list (Arabic).
    from magpie.tagging.language import UNDETECTABLE, detect_language

    found = detect_language(["ខ្ញុំចង់រៀនភាសាខ្មែរ", "ສະບາຍດີ ຂ້ອຍຢາກຮຽນພາສາລາວ"])
    assert found == [(None, UNDETECTABLE)] * 2


# ------------------------------------------------------- colons and question marks


@pytest.mark.parametrize(
    "text",
    [
        "List three colours:",
        "请列出三种颜色：",  # FULLWIDTH COLON
        "以下の文を翻訳してください：\n",
        "Complete this﹕",  # SMALL COLON
        "Complete this︓",  # PRESENTATION FORM FOR VERTICAL COLON
        "ዝርዝሩን ጻፍ፦",  # ETHIOPIC PREFACE COLON
        'Translate "the following:"',
        "请回答下面的问题：」",
        "（如下：）  ",
        "**Write a poem about:**",
        "Complete this: \n",
    ],
)
def test_trailing_colon_of_any_script_counts(text):
    from magpie.sanitize import ends_with_colon

    assert ends_with_colon(text)


@pytest.mark.parametrize(
    "text",
    [
        "Ratio 3:2 is common.",
        "时间是10：30，请提醒我。",
        "注意：请用中文回答。",
        "What is 2:1 in percent?",
        "日本の首都はどこですか？",
        "꞉",  # MODIFIER LETTER COLON is a letter (a length mark), not punctuation
        "",
        "   ",
    ],
)
def test_a_colon_in_the_middle_or_none_does_not_count(text):
    from magpie.sanitize import ends_with_colon

    assert not ends_with_colon(text)


QWEN = "Qwen/Qwen2-7B-Instruct"


@pytest.mark.parametrize(
    "raw, expected",
    [
        # Q-cut at a full-width or Arabic question mark, as at "?"
        ("北京在哪里？答案：北京在中国。", "北京在哪里？"),
        ("ما هي عاصمة فرنسا؟ الجواب: باريس", "ما هي عاصمة فرنسا؟"),
        # a first line ending with "：" introduces what follows: cut at the heading
        ("请翻译以下句子：\n## 句子\nHello", "请翻译以下句子："),
        # labels and answer markers with the full-width colon
        ("Question：北京在哪里", "北京在哪里"),
        ("请介绍北京。\nAnswer：北京是中国的首都。", "请介绍北京。"),
        # "¿" opens a question: the cut is at the closing "?"
        ("¿Cuál es la capital de Francia? Respuesta: París", "¿Cuál es la capital de Francia?"),
    ],
)
def test_sanitize_knows_full_width_and_other_scripts_marks(raw, expected):
    from magpie.sanitize import instruction_post_process

    assert instruction_post_process(raw, QWEN)[0] == expected
