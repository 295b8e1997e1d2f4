"""HTML output: escaping and structure, and the page as a real headless browser renders it."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

import lexner
from lexner.cli import main
from lexner.entity import Entity
from lexner.output import render_html

TEXT = "张三<b>在</b>北京 & 国际奥委会\n第二行"
ENTITIES = [Entity(0, 2, "PER", "张三"), Entity(10, 12, "LOC", "北京"), Entity(15, 20, "ORG", "国际奥委会")]


class Marks(HTMLParser):
    """The text of the page's ``div.text`` blocks (labels left out) and each mark's (text, label, seen)."""

    def __init__(self):
        super().__init__()
        self.texts, self.marks, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "text":
            self.texts.append("")
        if tag == "mark":
            self.marks.append(["", attrs.get("data-label"), attrs.get("data-seen")])
        self.stack.append(attrs.get("class") if tag == "span" else tag)

    def handle_endtag(self, tag):
        self.stack.pop()

    def handle_data(self, data):
        if "label" in self.stack:
            if self.marks:
                assert data == self.marks[-1][1]
            return
        if self.texts and "div" in self.stack:
            self.texts[-1] += data
        if "mark" in self.stack:
            self.marks[-1][0] += data


def parse(page: str) -> Marks:
    parser = Marks()
    parser.feed(page)
    return parser


def test_page_holds_the_text_exactly_and_each_entity_as_a_labelled_mark():
    assert [TEXT[e.start : e.end] for e in ENTITIES] == [e.text for e in ENTITIES]
    page = render_html(TEXT, ENTITIES)
    assert "<b>" not in page and "&lt;b&gt;" in page  # the text's markup is text, not markup
    found = parse(page)
    assert found.texts == [TEXT]
    assert [(m[0], m[1]) for m in found.marks] == [(e.text, e.label) for e in ENTITIES]
    assert lexner.render_html is render_html


def test_tag_format_html_writes_one_page_for_all_texts(tmp_path, capsys):
    assert main(["tag", "张三在北京大学读书。", "李四去了上海", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    found = parse(page)
    assert found.texts == ["张三在北京大学读书。", "李四去了上海"]
    assert ("北京大学", "ORG") in [(m[0], m[1]) for m in found.marks]


def browser() -> str | None:
    return os.environ.get("LEXNER_BROWSER") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_headless_browser_shows_every_entity_highlighted_with_its_label(tmp_path):
    chromium = browser()
    if chromium is None:
        if os.environ.get("LEXNER_REQUIRE_BROWSER"):
            pytest.fail("LEXNER_REQUIRE_BROWSER is set but no chromium was found")
        pytest.skip("no headless browser (apt-get install chromium, or set LEXNER_BROWSER)")
    ner = lexner.load()
    texts = ["2008年北京奥运会在中国举行，国际奥委会主席罗格出席开幕式。", "张三在北京大学读书。"]
    blocks = [lexner.output.render(t, ner.tag(t), "html") for t in texts]
    page = lexner.output.HTML_HEAD + "".join(blocks) + """<script>
for (const m of document.querySelectorAll("mark.entity")) {
  const box = m.getBoundingClientRect(), style = getComputedStyle(m);
  m.dataset.seen = `${style.backgroundColor} ${Math.round(box.width)}x${Math.round(box.height)}`;
}
</script>""" + lexner.output.HTML_TAIL
    (tmp_path / "page.html").write_text(page, encoding="utf-8")
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           (tmp_path / "page.html").as_uri()], capture_output=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = parse(done.stdout)
    assert found.texts == texts
    expected = [(e.text, e.label) for t in texts for e in ner.tag(t)]
    assert [(m[0], m[1]) for m in found.marks] == expected and len(expected) >= 5
    for text, label, seen in found.marks:
        colour, size = seen.rsplit(" ", 1)
        width, height = map(int, size.split("x"))
        assert re.fullmatch(r"rgb\(\d+, \d+, \d+\)", colour) and colour != "rgb(255, 255, 255)", (text, seen)
        assert width > 0 and height > 0, (text, seen)


def test_a_page_with_a_lone_surrogate_can_be_written_to_a_utf8_file(tmp_path):
    """As a browser shows it: U+FFFD, here in the page itself (UTF-8 cannot hold a lone surrogate, so the
    README's open(...).write(render_html(...)) raised UnicodeEncodeError)."""
    text = "张\ud800三在北京"
    page = render_html(text, [Entity(0, 3, "PER", text[:3]), Entity(4, 6, "LOC", "北京")])
    (tmp_path / "x.html").write_text(page, encoding="utf-8")
    parsed = parse((tmp_path / "x.html").read_text(encoding="utf-8"))
    assert parsed.texts == ["张\ufffd三在北京"] and [m[:2] for m in parsed.marks] == [["张\ufffd三", "PER"], ["北京", "LOC"]]
