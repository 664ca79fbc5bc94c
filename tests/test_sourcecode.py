"""Source code selection and copy, as Gage 0.1.2 does it (run-format §4.1)."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from gage_runs import fsmode
from gage_runs.errors import SourcePatternError
from gage_runs.file_select import glob_to_regex, is_text_file, parse_pattern, select_files
from gage_runs.sourcecode import (
    DEFAULT_PATTERNS,
    copy_sourcecode,
    sourcecode_patterns,
)
from gage_runs.types import OpDef

TEXT = b"print('hello')\n"
BINARY = bytes(range(256)) * 4


def write(root, relpath: str, content: bytes = TEXT, mode: int | None = None) -> str:
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    if mode is not None:
        os.chmod(path, mode)
    return path


def tree(root, *relpaths: str) -> None:
    for relpath in relpaths:
        write(root, relpath)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def opdef(sourcecode) -> OpDef:
    return OpDef("train", {} if sourcecode is None else {"sourcecode": sourcecode})


# ---------------------------------------------------------------------
# Globs
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "glob, path, matches",
    [
        ("*.py", "train.py", True),
        ("*.py", "src/train.py", False),
        ("**/*.py", "train.py", True),
        ("**/*.py", "a/b/train.py", True),
        ("a/**/b.py", "a/b.py", True),
        ("a/**/b.py", "a/x/y/b.py", True),
        ("a**b", "a/x/b", True),
        ("f?.py", "f.py", True),
        ("f?.py", "f1.py", True),
        ("f?.py", "f12.py", False),
        ("f?.py", "f/.py", False),
        ("data", "data", True),
        ("data", "data/x", False),
        ("data", "my-data", False),
        ("a.py", "a_py", False),
        ("[ab].py", "[ab].py", True),
        ("[ab].py", "a.py", False),
        ("x/**", "x/y", False),
    ],
)
def test_glob_to_regex_follows_gage_rules(glob, path, matches):
    """`**` spans dir prefixes only, `*` stays within a part, `?` matches at
    most one character, other text is literal, and the match is anchored."""
    assert bool(glob_to_regex(glob).match(path)) is matches


def test_glob_to_regex_pattern_text():
    """The regex text is Gage's: `**/` and `**` give `(?:.+/)*`, then `$`."""
    assert glob_to_regex("**/*.py").pattern == r"(?:.+/)*[^/]*\.py$"
    assert glob_to_regex("a/**").pattern == r"a/(?:.+/)*$"
    assert glob_to_regex("f?.txt").pattern == r"f[^/]?\.txt$"


def test_star_py_selects_top_level_files_only(tmp_path):
    """`*.py` matches top-level files; `**/*.py` matches at any depth."""
    tree(tmp_path, "train.py", "src/model.py", "README.md")
    assert select_files(str(tmp_path), ["*.py"]) == ["train.py"]
    assert select_files(str(tmp_path), ["**/*.py"]) == ["src/model.py", "train.py"]


def test_dir_double_star_matches_no_file(tmp_path):
    """`x/**` becomes `x/(?:.+/)*$`, which never matches a file."""
    tree(tmp_path, "x/a.py", "x/y/b.py")
    assert select_files(str(tmp_path), ["x/**"]) == []
    assert select_files(str(tmp_path), ["x/*"]) == ["x/a.py"]
    assert select_files(str(tmp_path), ["x/**/*"]) == ["x/a.py", "x/y/b.py"]


# ---------------------------------------------------------------------
# Pattern syntax
# ---------------------------------------------------------------------


def test_leading_dash_makes_an_exclude():
    """`-GLOB` (spaces after the dash allowed) excludes; anything else includes."""
    assert parse_pattern("*.py").include is True
    assert parse_pattern("-*.py").include is False
    exclude = parse_pattern("-   *.py")
    assert exclude.include is False
    assert exclude.regex.match("a.py")


def test_backslash_dash_is_a_literal_dash(tmp_path):
    """`\\-x` includes a file literally named `-x`."""
    tree(tmp_path, "-x", "x")
    rule = parse_pattern("\\-x")
    assert rule.include is True
    assert select_files(str(tmp_path), ["\\-x"]) == ["-x"]


def test_globs_are_shell_split_so_quotes_allow_spaces(tmp_path):
    """A pattern is split like a shell command line: quote a glob with spaces."""
    tree(tmp_path, "my data/a.csv", "other/b.csv")
    assert select_files(str(tmp_path), ["'my data/*'"]) == ["my data/a.csv"]
    assert select_files(str(tmp_path), ['"my data/*" text']) == ["my data/a.csv"]


def test_tokens_are_parsed():
    """Tokens set the type, size bounds, sentinel and max matches."""
    rule = parse_pattern("-**/* dir sentinel=bin/activate")
    assert (rule.type, rule.sentinel) == ("dir", "bin/activate")
    rule = parse_pattern("**/* text size<100000 max-matches=500")
    assert (rule.type, rule.size_lt, rule.size_gt, rule.max_matches) == (
        "text",
        100000,
        None,
        500,
    )
    assert parse_pattern("*.bin binary size>10").size_gt == 10


def test_repeated_tokens_follow_gage():
    """A repeated size bound keeps the last value; max-matches and sentinel
    keep the first."""
    rule = parse_pattern("* size<5 size<7 max-matches=1 max-matches=2")
    assert (rule.size_lt, rule.max_matches) == (7, 1)
    assert parse_pattern("* dir sentinel=a sentinel=b").sentinel == "a"


@pytest.mark.parametrize(
    "pattern, reason",
    [
        ("'*.py", "no closing quotation"),
        ("*.py\\", "no escaped character"),
        ("", "missing glob"),
        ("-", "missing glob"),
        ("- ", "missing glob"),
        ("*.py texty", "unknown token 'texty'"),
        ("*.py size=10", "unknown token 'size=10'"),
        ("*.py size<ten", "expected a whole number in 'size<ten'"),
        ("*.py size>", "expected a whole number in 'size>'"),
        ("*.py size<-1", "expected a whole number in 'size<-1'"),
        ("*.py max-matches=1.5", "expected a whole number in 'max-matches=1.5'"),
        ("** dir sentinel=", "missing path in 'sentinel='"),
        ("*.py text binary", "conflicting types 'text' and 'binary'"),
    ],
)
def test_malformed_patterns_raise_with_the_pattern_quoted(tmp_path, pattern, reason):
    """A malformed pattern raises SourcePatternError with a one-line message
    quoting the pattern and giving the reason."""
    with pytest.raises(SourcePatternError) as e:
        select_files(str(tmp_path), ["**/*.py", pattern])
    assert str(e.value) == f"invalid source code pattern {pattern!r}: {reason}"
    assert "\n" not in str(e.value)


def test_non_string_pattern_raises():
    """A pattern that is not a string (say a number in a Gage file) is an error."""
    with pytest.raises(SourcePatternError, match="must be a string, not 42"):
        parse_pattern(42)  # type: ignore[arg-type]
    with pytest.raises(SourcePatternError, match="must be a string, not 42"):
        sourcecode_patterns(opdef(["*.py", 42]))


def test_sentinel_on_a_file_rule_is_accepted_and_ignored(tmp_path):
    """As in Gage, `sentinel=` only means something on a `dir` rule."""
    tree(tmp_path, "a.py")
    assert select_files(str(tmp_path), ["*.py sentinel=nothing"]) == ["a.py"]


# ---------------------------------------------------------------------
# Rule evaluation
# ---------------------------------------------------------------------


def test_last_rule_with_a_result_wins(tmp_path):
    """Every rule is tested; the last one that matches decides."""
    tree(tmp_path, "a.txt", "keep.txt", "b.py")
    patterns = ["**/*", "-*.txt", "keep.txt"]
    assert select_files(str(tmp_path), patterns) == ["b.py", "keep.txt"]


def test_no_matching_rule_means_not_selected(tmp_path):
    """A file no rule matches is not selected; excludes alone select nothing."""
    tree(tmp_path, "a.py", "b.md")
    assert select_files(str(tmp_path), ["*.py"]) == ["a.py"]
    assert select_files(str(tmp_path), ["-*.py"]) == []
    assert select_files(str(tmp_path), []) == []


def test_exclude_without_dir_token_matches_files_only(tmp_path):
    """`-data` excludes a file named `data`; `-data dir` prunes the dir."""
    tree(tmp_path, "data/x.csv", "sub/data", "data2/y.csv")
    assert select_files(str(tmp_path), ["**/*", "-data"]) == [
        "data/x.csv",
        "data2/y.csv",
        "sub/data",
    ]
    assert select_files(str(tmp_path), ["**/*", "-**/data"]) == ["data/x.csv", "data2/y.csv"]
    assert select_files(str(tmp_path), ["**/*", "-data dir"]) == ["data2/y.csv", "sub/data"]


def test_dir_rules_prune_and_later_dir_rules_override(tmp_path):
    """Dirs are tested against `dir` rules only; the last one decides, and an
    excluded dir is not walked at all."""
    tree(tmp_path, "a/x.py", "b/y.py", "b/c/z.py", "c/w.py")
    patterns = ["**/*.py", "-* dir", "b dir"]
    assert select_files(str(tmp_path), patterns) == ["b/c/z.py", "b/y.py"]


def test_dir_sentinel_is_a_glob_inside_the_dir(tmp_path):
    """`sentinel=GLOB` limits a dir rule to dirs holding a matching path."""
    tree(tmp_path, "pkg/a.py", "build/out.py", "build/lib/CACHE.tag", "other/lib/b.py")
    patterns = ["**/*.py", "-* dir sentinel=lib/*.tag"]
    assert select_files(str(tmp_path), patterns) == ["other/lib/b.py", "pkg/a.py"]


def test_text_and_binary_tokens(tmp_path):
    """`text` and `binary` filter files by Gage's text test."""
    write(tmp_path, "notes.txt", b"plain words\n")
    write(tmp_path, "blob.dat", BINARY)
    write(tmp_path, "logo.png", b"not really a png\n")
    assert select_files(str(tmp_path), ["* text"]) == ["notes.txt"]
    assert select_files(str(tmp_path), ["* binary"]) == ["blob.dat", "logo.png"]


def test_size_tokens_are_strict_bounds(tmp_path):
    """`size<N` needs fewer than N bytes, `size>N` more than N."""
    write(tmp_path, "9", b"x" * 9)
    write(tmp_path, "10", b"x" * 10)
    write(tmp_path, "11", b"x" * 11)
    assert select_files(str(tmp_path), ["* size<10"]) == ["9"]
    assert select_files(str(tmp_path), ["* size>10"]) == ["11"]


def test_size_quirks_are_kept(tmp_path):
    """Gage quirks: with both bounds either one suffices, and a bound of 0
    never holds (so `size>0` selects nothing)."""
    for n in (1, 5, 9):
        write(tmp_path, str(n), b"x" * n)
    assert select_files(str(tmp_path), ["* size>8 size<2"]) == ["1", "9"]
    assert select_files(str(tmp_path), ["* size>0"]) == []


def test_max_matches_caps_a_rule_in_walk_order(tmp_path):
    """A rule stops matching after `max-matches` paths, counted in walk
    order: a dir's files first (sorted), then its subdirs (sorted)."""
    tree(tmp_path, "z.py", "a/1.py", "a/2.py", "b/3.py")
    assert select_files(str(tmp_path), ["**/*.py max-matches=3"]) == [
        "a/1.py",
        "a/2.py",
        "z.py",
    ]


def test_max_matches_counts_matches_a_later_rule_overrides(tmp_path):
    """A rule's counter goes up on every match, even when a later exclude
    overrides it, so excluded files still use up the cap."""
    tree(tmp_path, "a/1.py", "a/2.py", "b/3.py", "b/4.py")
    patterns = ["**/*.py max-matches=3", "-a/*"]
    assert select_files(str(tmp_path), patterns) == ["b/3.py"]


def test_links_to_dirs_are_followed(tmp_path):
    """The walk follows links to dirs, so their files appear under the link."""
    tree(tmp_path, "real/a.py")
    os.symlink(tmp_path / "real", tmp_path / "linked")
    assert select_files(str(tmp_path), ["**/*.py"]) == ["linked/a.py", "real/a.py"]


def test_exclude_dirs_prunes_by_identity(tmp_path):
    """`exclude_dirs` (absolute paths) are pruned, also when reached by a link."""
    tree(tmp_path, "src/a.py", "runs/r1/b.py")
    os.symlink(tmp_path / "runs", tmp_path / "runs-link")
    selected = select_files(str(tmp_path), ["**/*.py"], exclude_dirs=[str(tmp_path / "runs")])
    assert selected == ["src/a.py"]


def test_non_regular_files_are_never_opened(tmp_path):
    """A FIFO is not a regular file, so it is not text and is never read
    (reading it would block)."""
    os.mkfifo(tmp_path / "pipe")
    write(tmp_path, "a.txt", b"words\n")
    assert select_files(str(tmp_path), ["* text"]) == ["a.txt"]
    assert select_files(str(tmp_path), ["* binary"]) == ["pipe"]


# ---------------------------------------------------------------------
# Text test
# ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.py", "a.R", "a.csv", "a.json", "a.md", "a.sh", "a.yml"])
def test_text_extensions_are_text_whatever_the_content(tmp_path, name):
    """Gage's text extensions (case-insensitive) decide without reading."""
    assert is_text_file(write(tmp_path, name, BINARY))


@pytest.mark.parametrize("name", ["a.png", "a.PDF", "a.pkl", "a.pyc", "a.zip", "a.svg"])
def test_binary_extensions_are_binary_whatever_the_content(tmp_path, name):
    """Gage's binary extensions (case-insensitive) decide without reading."""
    assert not is_text_file(write(tmp_path, name, b"plain words\n"))


@pytest.mark.parametrize("name", ["a.txt", "a.js", "a.tsx.txt"])
def test_txt_and_js_are_not_in_the_text_list(tmp_path, name):
    """Gage quirk: its list says `.tsx.txt` and `js`, which never equal an
    extension, so `.txt` and `.js` files go to the content heuristic."""
    assert not is_text_file(write(tmp_path, name, BINARY))
    assert is_text_file(write(tmp_path, "text-" + name, b"plain words\n"))


def test_content_heuristic(tmp_path):
    """Without a known extension, the first bytes decide: plain or Latin-1
    text is text; undecodable bytes, or a 0xFF byte, make it binary."""
    assert is_text_file(write(tmp_path, "plain", b"a = 1\n" * 100))
    assert is_text_file(write(tmp_path, "latin1", "caf\xe9 cr\xe8me\n".encode("latin-1")))
    assert not is_text_file(write(tmp_path, "bytes", BINARY))
    assert not is_text_file(write(tmp_path, "ff", b"hello\xff world " * 20))


def test_empty_file_is_text(tmp_path):
    """An empty file (with no known extension) is text."""
    assert is_text_file(write(tmp_path, "empty", b""))


def test_only_the_first_1024_bytes_are_tested(tmp_path):
    """The heuristic reads at most 1024 bytes; what follows does not count."""
    assert is_text_file(write(tmp_path, "head", b"x" * 1024 + BINARY))
    assert not is_text_file(write(tmp_path, "tail", b"x" * 1023 + BINARY))


def test_missing_paths_and_dirs_are_not_text(tmp_path):
    """Only regular files can be text."""
    assert not is_text_file(str(tmp_path / "missing.py"))
    assert not is_text_file(str(tmp_path))


# ---------------------------------------------------------------------
# Default patterns
# ---------------------------------------------------------------------


def select_defaults(root) -> list[str]:
    return select_files(str(root), DEFAULT_PATTERNS)


def test_defaults_prune_dot_dirs_but_keep_dot_files(tmp_path):
    """`-**/.* dir` prunes dot dirs at any depth; dot files are still copied."""
    tree(tmp_path, ".env", ".git/config", "src/.cache/x.py", "src/.flake8", "src/a.py")
    assert select_defaults(tmp_path) == [".env", "src/.flake8", "src/a.py"]


def test_defaults_prune_virtualenvs(tmp_path):
    """Any dir holding `bin/activate` is pruned as a virtualenv."""
    tree(tmp_path, "venv/bin/activate", "venv/lib/site.py", "env2/bin/activate", "bin/run.sh")
    assert select_defaults(tmp_path) == ["bin/run.sh"]


def test_defaults_prune_dirs_holding_nocopy(tmp_path):
    """Any dir holding a `.nocopy` file is pruned, subdirs included."""
    tree(tmp_path, "data/.nocopy", "data/x.csv", "data/sub/y.csv", "src/z.py")
    assert select_defaults(tmp_path) == ["src/z.py"]


def test_defaults_exclude_top_level_summary_json_only(tmp_path):
    """`-summary.json` matches the top-level file, not nested ones."""
    tree(tmp_path, "summary.json", "eval/summary.json")
    assert select_defaults(tmp_path) == ["eval/summary.json"]


def test_defaults_copy_text_files_under_100000_bytes(tmp_path):
    """The default include takes text files of fewer than 100000 bytes."""
    write(tmp_path, "small.txt", b"x" * 99_999)
    write(tmp_path, "limit.txt", b"x" * 100_000)
    write(tmp_path, "model.pkl", b"x")
    write(tmp_path, "weights", BINARY)
    assert select_defaults(tmp_path) == ["small.txt"]


def test_defaults_cap_counts_excluded_matches(tmp_path):
    """The default include stops after 500 matches in walk order. With 8
    top-level files and 510 under `many/`, `many/` gets 492 and later dirs
    nothing (as observed with real Gage)."""
    tree(tmp_path, *[f"top{i}.py" for i in range(8)])
    tree(tmp_path, *[f"many/f{i:03}.py" for i in range(510)], "z/late.py")
    selected = select_defaults(tmp_path)
    assert len(selected) == 500
    assert len([p for p in selected if p.startswith("many/")]) == 492
    assert "z/late.py" not in selected


def test_defaults_cap_counts_even_the_excluded_summary(tmp_path):
    """The top-level summary.json is excluded but still uses up one match."""
    tree(tmp_path, "summary.json", *[f"src/f{i:03}.py" for i in range(500)])
    selected = select_defaults(tmp_path)
    assert len(selected) == 499
    assert "src/f499.py" not in selected


# ---------------------------------------------------------------------
# Op def patterns
# ---------------------------------------------------------------------


def test_sourcecode_true_or_missing_uses_defaults():
    """`sourcecode: true` or no `sourcecode` key selects with the defaults."""
    assert sourcecode_patterns(opdef(True)) == DEFAULT_PATTERNS
    assert sourcecode_patterns(opdef(None)) == DEFAULT_PATTERNS


def test_sourcecode_false_or_empty_copies_nothing():
    """`sourcecode: false` or `[]` means no patterns."""
    assert sourcecode_patterns(opdef(False)) == []
    assert sourcecode_patterns(opdef([])) == []


def test_sourcecode_with_an_include_is_used_as_is():
    """A list with at least one include replaces the defaults."""
    assert sourcecode_patterns(opdef(["*.py", "-test_*.py"])) == ["*.py", "-test_*.py"]
    assert sourcecode_patterns(opdef("src/**/*.py")) == ["src/**/*.py"]
    assert sourcecode_patterns(opdef(["\\-x"])) == ["\\-x"]


def test_sourcecode_with_only_excludes_extends_defaults():
    """A list of excludes only is appended to the defaults."""
    assert sourcecode_patterns(opdef(["-data dir"])) == [*DEFAULT_PATTERNS, "-data dir"]


def test_sourcecode_patterns_are_a_fresh_list():
    """Changing the returned list does not change DEFAULT_PATTERNS."""
    sourcecode_patterns(opdef(True)).append("*.bin")
    assert "*.bin" not in DEFAULT_PATTERNS


# ---------------------------------------------------------------------
# Copy
# ---------------------------------------------------------------------


def test_copy_sourcecode_copies_selected_files_to_their_relpaths(tmp_path):
    """Selected files land at `run_dir/<relpath>`; the relpaths are returned."""
    project = tmp_path / "project"
    tree(project, "train.py", "src/model.py", ".git/HEAD")
    run_dir = tmp_path / "run"
    copied = copy_sourcecode(str(project), str(run_dir), opdef(None))
    assert copied == ["src/model.py", "train.py"]
    assert (run_dir / "src" / "model.py").read_bytes() == TEXT
    assert not (run_dir / ".git").exists()


def test_copy_keeps_mode_bits(tmp_path):
    """Each copy gets its source's mode bits (copyfile + copymode)."""
    project = tmp_path / "project"
    write(project, "run.sh", b"echo hi\n", mode=0o755)
    write(project, "secret.py", TEXT, mode=0o600)
    run_dir = tmp_path / "run"
    copy_sourcecode(str(project), str(run_dir), opdef(None))
    assert mode(run_dir / "run.sh") == 0o755
    assert mode(run_dir / "secret.py") == 0o600


def test_copy_makes_parent_dirs_with_the_shared_mode(tmp_path):
    """Parent dirs get fsmode's umask-independent dir mode."""
    project = tmp_path / "project"
    tree(project, "a/b/c.py")
    run_dir = tmp_path / "run"
    old_umask = os.umask(0o077)
    try:
        copy_sourcecode(str(project), str(run_dir), opdef(None))
    finally:
        os.umask(old_umask)
    assert mode(run_dir / "a") == fsmode.dir_mode() & 0o7777
    assert mode(run_dir / "a" / "b") == fsmode.dir_mode() & 0o7777


def test_copy_nothing_leaves_run_dir_alone(tmp_path):
    """With `sourcecode: false` nothing is copied and the run dir is not made."""
    project = tmp_path / "project"
    tree(project, "train.py")
    run_dir = tmp_path / "run"
    assert copy_sourcecode(str(project), str(run_dir), opdef(False)) == []
    assert not run_dir.exists()


def test_copy_never_walks_the_run_dir(tmp_path):
    """A run dir inside the project is never copied into itself."""
    project = tmp_path / "project"
    tree(project, "train.py")
    run_dir = project / "runs" / "r1"
    write(run_dir, "train.py")
    assert copy_sourcecode(str(project), str(run_dir), opdef(None)) == ["train.py"]
    assert sorted(os.listdir(run_dir)) == ["train.py"]


def test_copy_skips_a_runs_dir_inside_the_project(tmp_path):
    """With `$runs-dir` inside the project, pass it in `exclude_dirs` so
    other runs are not copied either."""
    project = tmp_path / "project"
    tree(project, "train.py", "runs/r0/train.py", "runs/r0.meta/opref")
    runs_dir = project / "runs"
    copied = copy_sourcecode(
        str(project), str(runs_dir / "r1"), opdef(None), exclude_dirs=[str(runs_dir)]
    )
    assert copied == ["train.py"]


def test_copying_a_fifo_fails_without_blocking(tmp_path):
    """A FIFO an untyped rule selects cannot be copied: SpecialFileError, as
    with shutil.copyfile, and no hang waiting for a writer."""
    project = tmp_path / "project"
    project.mkdir()
    os.mkfifo(project / "pipe")
    with pytest.raises(shutil.SpecialFileError):
        copy_sourcecode(str(project), str(tmp_path / "run"), opdef(["*"]))


def test_copy_is_byte_for_byte(tmp_path):
    """Any selected file, binary or large, is copied exactly."""
    project = tmp_path / "project"
    content = os.urandom(3_000_000)
    write(project, "weights.bin", content)
    copy_sourcecode(str(project), str(tmp_path / "run"), opdef(["**/*"]))
    assert (tmp_path / "run" / "weights.bin").read_bytes() == content
