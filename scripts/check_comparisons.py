"""Find comparisons typed into the prose of the book's notebooks instead of computed and glued.

Usage::

    python scripts/check_comparisons.py [NOTEBOOK_OR_FOLDER ...]   # default: book/

The book's rule: a sentence that compares, ranks or predicts an outcome ("beats", "is better than",
"costs less", "within the noise", ...) either rests on the page's own run, and then its verdict, or the
figures it rests on, are glued from code (``mmbook.results.compare`` gives a verdict whose words are
glued), or it quotes a source, or it is a general statement that is not about a measured number.

The scanner reads the markdown cells of each notebook (the Markdown pages ``.md`` as one cell each),
keeps their prose as ``scripts/check_prose_figures.py`` does (math, code, directive options and
generated blocks left out), splits it into sentences and reports every sentence that holds one of
the phrases in :data:`PHRASES` outside a glued role. A phrase inside a glued value (``{glue:text}``
of a verdict made by ``mmbook.results.compare``) is the page's code speaking, and is not seen. Glued
*figures* beside a typed verdict do not excuse it: in "fusion reaches {glue:text}`fused`, better than
the image alone at {glue:text}`image`" the words "better than" stay true only while the figures agree,
so the verdict must be glued too. A phrase is accepted when the line that holds it carries

- a ``<!-- computed: REASON -->`` comment and the sentence holds a glued role: the phrase only names
  what the glued value was selected as, so it cannot disagree with it ("the best one
  {glue:text}`best_single`" where the code takes the maximum; "ranked by how much each loses:
  {glue:text}`ranking`"). Without a glued role in the sentence the comment counts for nothing;
- a ``{cite}`` role or a ``<!-- quoted: SOURCE -->`` comment on the line that holds the phrase (a
  sentence may span lines; each of its phrases is judged on its own line): the comparison is quoted
  from a paper or from ``benchmarks/RESULTS.md``;
- a ``<!-- general: REASON -->`` comment on the line that holds the phrase: a statement of fact that is
  not about the page's measured numbers ("a larger batch gives more negatives"). Never use it for a
  sentence about the page's own results.

Sentences inside exercises (``{exercise}`` blocks, ``{exercise-start}`` ... ``{exercise-end}``) and
solutions (``{solution}`` blocks, ``{solution-start}`` ... ``{solution-end}``, which may span several
cells) are exempt: predictions readers are asked to make belong there.

Phrases are matched case-insensitively, on whole words, after roles, inline code, HTML comments and
link targets are taken out of the sentence (so ``{ref}`the best model``` is not a hit).

Exit status 1 when something was found, with one line per hit: ``path:cell:line: phrase: excerpt``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_prose_figures import HTML_COMMENT, INLINE_CODE, LINK, QUOTED_MARKER, ROLE, notebooks_under, prose_lines  # noqa: E402

# The curated list of comparative and ranking phrases about outcomes, as (name, regular expression).
# Each is matched case-insensitively between word boundaries. Kept deliberately to phrases that claim
# one result is ahead of, behind or level with another; words with common neutral senses are narrowed
# ("behind" only after a verb of standing: "falls behind", "is behind"; "the most" only as "the most
# accurate"), so that a definition like "the idea behind attention" is not reported.
PHRASES: tuple[tuple[str, str], ...] = (
    ("beats", r"beat(?:s|ing)?"),
    ("outperforms", r"outperform(?:s|ed|ing)?"),
    ("better than", r"better\s+than"),
    ("worse than", r"worse\s+than"),
    ("no better than", r"no\s+better"),
    ("higher than", r"higher\s+than"),
    ("lower than", r"lower\s+than"),
    ("faster than", r"faster\s+than"),
    ("slower than", r"slower\s+than"),
    ("cheaper than", r"cheaper\s+than"),
    ("more accurate", r"more\s+accurate"),
    ("less accurate", r"less\s+accurate"),
    ("costs less/more", r"cost(?:s|ing)?\s+(?:far\s+|much\s+)?(?:less|more|fewer)"),
    ("helps most", r"helps?\s+(?:the\s+)?most"),
    ("helps", r"helps"),
    ("free gain", r"free\s+gain"),
    ("generalizes better", r"generali[sz]es?\s+(?:\w+\s+){0,3}better"),
    ("more useful", r"(?:the\s+)?more\s+useful"),
    ("points higher/lower", r"points?\s+(?:higher|lower)"),
    ("is slower/faster", r"(?:is|are|runs?|gets?)\s+(?:\w+\s+)?(?:slower|faster)"),
    ("hurts", r"hurt(?:s|ing)?"),
    ("the best", r"the\s+best"),
    ("the worst", r"the\s+worst"),
    ("the least", r"the\s+least"),
    ("the most accurate", r"(?:the\s+)?most\s+accurate"),
    ("wins", r"win(?:s|ning)?"),
    ("loses", r"los(?:es|ing)"),
    ("overtakes", r"overt(?:akes?|aking|ook)"),
    ("within the noise", r"within\s+the\s+(?:noise|spread)"),
    ("ahead of", r"ahead\s+of"),
    ("behind", r"(?:falls?|falling|fell|lags?|lagging|trails?|trailing|stays?|is|are|remains?|was|were)\s+behind"),
    ("closes the gap", r"clos(?:es?|ing|ed)\s+the\s+gap"),
    # "near" only after a verb of standing, so "is close to log N" and "BLEU is near zero" are not reported.
    ("sits near", r"(?:sits?|sat|sitting|stays?|stayed|staying|remains?|remained|remaining|lies|lying|stands?|stood|"
                  r"hovers?|hovered|hovering)\s+near"),
    ("above/below chance", r"(?:above|below|near|at|over)\s+chance"),
    ("far below/above", r"far\s+(?:below|above)|far\s+from\s+what"),
    ("the easiest/hardest", r"the\s+(?:easiest|hardest)"),
    ("errors are mostly", r"errors\s+are\s+mostly|(?:most|more)\s+of\s+the\s+errors"),
    ("the slow part", r"the\s+(?:slow|slowest|fast|fastest)\s+(?:parts?|steps?|stages?)"),
    # Only after a form of "to be" (not "there is"), so "not enough to show" and "there is not enough data"
    # are not reported.
    ("is not enough", r"(?<!there\s)(?:is|are|was|were)\s+not\s+enough"),
    ("the remedy", r"(?:is|are)\s+the\s+remedy"),
    # What a model picks up first: "learns X before Y" within a few words, or "before it has learned".
    # Only the model's verbs (a bare "before you learn" in a reading guide is not reported).
    ("learns X before Y", r"(?:learns|memori[sz]es)\s+(?:[\w'’,-]+\s+){0,6}?before|"
                          r"before\s+it\s+(?:has|had)\s+(?:learned|learnt|memori[sz]ed)"),
    # A prediction of how long something takes, which the page can time and glue instead.
    ("in about a minute", r"in\s+(?:about|under|less\s+than|around|roughly|a\s+few|(?:about|under)\s+a\s+few)\s+"
                          r"(?:a\s+|an\s+|one\s+|two\s+|three\s+|five\s+|ten\s+|\d+\s+)?(?:minutes?|seconds?|hours?)"),
)
PHRASE = re.compile("|".join(rf"\b(?P<p{i}>{pattern})\b" for i, (_, pattern) in enumerate(PHRASES)), re.IGNORECASE)
GLUE_ROLE = re.compile(r"\{glue(?::[\w-]+)?\}`")
GENERAL_MARKER = re.compile(r"<!--\s*general:\s*\S.*?-->")
COMPUTED_MARKER = re.compile(r"<!--\s*computed:\s*\S.*?-->")
EXEMPT_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{(exercise|solution|exercise-start|solution-start|"
                          r"exercise-end|solution-end)\}")
ANY_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\{[\w:-]+\}|[\w+-]*)")
# A new block (and so a new sentence) starts at a heading, a list item, a table row or a quote.
BLOCK_START = re.compile(r"^\s*(?:#{1,6}\s|[-*+]\s|\d+[.)]\s|\||>)")
# A sentence ends at . ! or ? followed by white space (not after a common abbreviation).
SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bcf)(?<!\betc)(?<!\bFig)(?<!\bEq)[.!?]+[)\"'*_]*\s+")


@dataclass(frozen=True)
class Hit:
    """One typed comparison: where it is, the phrase found and the sentence that holds it."""

    path: Path
    cell: int
    cell_id: str | None
    line: int
    phrase: str
    sentence: str

    def __str__(self) -> str:
        excerpt = " ".join(self.sentence.split())
        if len(excerpt) > 160:
            excerpt = excerpt[:157] + "..."
        return f"{self.path}:{self.cell}:{self.line}: {self.phrase}: {excerpt}"


def blank_exercises(source: str, in_solution: bool = False) -> tuple[str, bool]:
    """``source`` with the lines of exercises and solutions blanked (line breaks kept), and whether a
    ``{solution-start}`` (or ``{exercise-start}``) region is still open at its end (it continues in the next cell).
    """
    lines = source.splitlines()
    out: list[str] = []
    block: str | None = None  # the fence marker of an open {exercise} or {solution} block
    depth = 0  # fenced blocks nested inside it with the same marker
    closing_region = False  # inside the fence of a {solution-end}: blank it, then leave the region
    for line in lines:
        stripped = line.strip()
        if block is not None:
            out.append("")
            fence = ANY_FENCE.match(line)
            if stripped == block:
                if depth:
                    depth -= 1
                else:
                    block = None
                    if closing_region:
                        in_solution, closing_region = False, False
            elif fence and fence.group(1) == block and fence.group(2):
                depth += 1
            continue
        exempt = EXEMPT_FENCE.match(line)
        if exempt:
            marker, kind = exempt.group(1), exempt.group(2)
            out.append("")
            block, depth = marker, 0
            if kind.endswith("-start"):
                in_solution = True
            elif kind.endswith("-end"):
                closing_region = True
            continue
        out.append("" if in_solution else line)
    return "\n".join(out), in_solution


def sentences(source: str) -> list[tuple[int, int, str]]:
    """The sentences of the prose of a markdown cell, as ``(first line, last line, text)`` (lines from 1)."""
    blocks: list[list[tuple[int, str]]] = []
    previous = None
    for number, line in prose_lines(source):
        starts_block = (not line.strip() or previous is None or number != previous + 1 or BLOCK_START.match(line)
                        or line.lstrip().startswith(("```", "~~~", ":::")))
        if starts_block or not blocks:
            blocks.append([])
        if line.strip():
            blocks[-1].append((number, line))
        previous = number
    found = []
    for block in blocks:
        if not block:
            continue
        text, starts = "", []
        for number, line in block:
            starts.append((len(text), number))
            text += line.strip() + "\n"

        def line_at(offset: int) -> int:
            return max(number for start, number in starts if start <= offset)

        begin = 0
        for end in [m.end() for m in SENTENCE_END.finditer(text)] + [len(text)]:
            if end <= begin:
                continue
            sentence = text[begin:end]
            if sentence.strip():
                first = begin + (len(sentence) - len(sentence.lstrip()))
                last = begin + len(sentence.rstrip()) - 1
                found.append((line_at(first), line_at(max(first, last)), sentence.strip()))
            begin = end
    return found


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group())


def phrases_in(sentence: str) -> list[tuple[int, str]]:
    """The comparative phrases in a sentence, as ``(line within the sentence, from 0, name in PHRASES)``.

    Roles, inline code, HTML comments and link targets are blanked first (keeping the line breaks).
    """
    text = HTML_COMMENT.sub(_blank, sentence)
    text = ROLE.sub(_blank, text)
    text = INLINE_CODE.sub(_blank, text)
    text = LINK.sub(_blank, text)
    found = []
    for match in PHRASE.finditer(text):
        name = PHRASES[int(next(k for k, v in match.groupdict().items() if v is not None)[1:])][0]
        found.append((text[:match.start()].count("\n"), name))
    return found


def read_cells(path: Path) -> list[dict]:
    """The cells of the notebook at ``path``, or one markdown cell for a ``.md`` page."""
    try:
        if Path(path).suffix == ".md":
            return [{"cell_type": "markdown", "source": Path(path).read_text(encoding="utf-8")}]
        return json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable notebook (.ipynb JSON): {error}") from error


def scan_source(source: str, in_solution: bool = False) -> tuple[list[tuple[int, str, str]], bool]:
    """The typed comparisons in one markdown cell, as ``(line, phrase, sentence)``, and whether a solution
    region is still open at its end."""
    source, in_solution = blank_exercises(source, in_solution)
    lines = source.splitlines()
    hits = []
    for first, _, sentence in sentences(source):
        glued = GLUE_ROLE.search(sentence) is not None
        for offset, name in phrases_in(sentence):
            line = lines[first + offset - 1]
            accepted = (QUOTED_MARKER.search(line) or GENERAL_MARKER.search(line)
                        or (glued and COMPUTED_MARKER.search(line)))
            if not accepted:
                hits.append((first + offset, name, sentence))
                break
    return hits, in_solution


def scan_notebook(path: Path) -> list[Hit]:
    """Every typed comparison in the markdown cells of the notebook (or ``.md`` page) at ``path``."""
    hits = []
    in_solution = False
    for index, cell in enumerate(read_cells(path)):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        found, in_solution = scan_source(source, in_solution)
        hits += [Hit(Path(path), index, cell.get("id"), line, phrase, sentence) for line, phrase, sentence in found]
    return hits


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or [Path(__file__).resolve().parents[1] / "book"]
    hits = [hit for notebook in notebooks_under(paths) for hit in scan_notebook(notebook)]
    for hit in hits:
        print(hit)
    if hits:
        print(f"{len(hits)} typed comparison(s): glue the verdict (mmbook.results.compare) into the sentence; where "
              "the phrase only names what a glued value was selected as (the best one, a glued ranking), add "
              "<!-- computed: REASON --> on its line; quote a source ({cite} or <!-- quoted: SOURCE --> on its "
              "line); or, for a statement that is not about the page's measured numbers, add "
              "<!-- general: REASON --> on its line")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
