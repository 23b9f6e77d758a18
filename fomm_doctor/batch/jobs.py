"""What to animate: the jobs of a batch, read from a CSV or JSON-lines file, or every photo x every video of two
folders. Pure reading and checking; nothing here runs a model.

A jobs file has one job per row (CSV, with a header) or per line (JSON lines, one object each):

    source,driving,output,mode,crop,paste_back
    alice.jpg,talk1.mp4,alice-talk1.mp4,relative,yes,yes
    bob.png,talk1.mp4,,,,

Only `source` and `driving` are required; an empty cell takes the run's default (the command's flags). Relative
paths are read from the jobs file's folder, so the file and its media can move together. Column names ignore case
and take `-` for `_` (`paste-back` = `paste_back`). A file the reader cannot trust (an unknown column, a value that
is not a yes or a no, an output name that leaves the output folder, two jobs writing one file) is refused as a
whole, with its row, before any work: that costs seconds, where a bad row found hours in costs a night. A missing
or damaged photo or video is not the file's fault: that job fails with its sentence, and the others go on.
"""
from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

from fomm_core.media.images import IMAGE_EXTENSIONS
from fomm_core.media.video import VIDEO_EXTENSIONS, WRITABLE_SUFFIXES
from fomm_doctor.animation import check_mode
from fomm_doctor.errors import UserError
from fomm_doctor.units import byte_size

MAX_JOBS_FILE = 256 * 1024 * 1024  # a jobs file is text: a gigabyte is a wrong file, not a long list
TRUE = ("1", "true", "yes", "y", "on")
FALSE = ("0", "false", "no", "n", "off")
# a part of an output name, in the bytes the OS stores: 255 is the usual limit, and the writer's temporary name
# beside it (.NAME.video.partial-PID.mp4) adds about 30
NAME_BYTES = 200
PATH_BYTES = 1024
WINDOWS_DEVICES = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"] +
                            [f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"])
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Job:
    """One `animate`: its inputs, where it writes (relative to the output folder) and how.

    row: the jobs file's row (the header is row 1) or line number, 0 for a job made from two folders.
    adapt_scale None keeps each model family's default.
    """
    source: Path
    driving: Path
    output: str
    row: int = 0
    checkpoint: Optional[str] = None
    config: Optional[str] = None
    mode: str = "relative"
    crop: bool = False
    paste_back: bool = False
    find_best_frame: bool = False
    adapt_scale: Optional[bool] = None
    audio: bool = True
    side_by_side: bool = False

    @property
    def where(self) -> str:
        """'row 7', or 'alice.jpg with talk1.mp4': how a sentence points at this job."""
        return f"row {self.row}" if self.row else f"{self.source.name} with {self.driving.name}"

    def settings(self) -> dict:
        """Everything that shapes the result, as JSON-ready values (the manifest's key is made from it)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "row"}
        out["source"], out["driving"] = str(self.source), str(self.driving)
        return out


COLUMNS = tuple(f.name for f in fields(Job) if f.name != "row")
BOOLEANS = ("crop", "paste_back", "find_best_frame", "adapt_scale", "audio", "side_by_side")


def default_output(source: Path, driving: Path) -> str:
    """'alice__talk1.mp4': the photo's and the video's names, which is what a reader of the folder looks for."""
    return f"{source.stem}__{driving.stem}.mp4"


def _boolean(value, column: str, where: str) -> Optional[bool]:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise UserError(f"{where}: {column} must be yes or no (or true/false, 1/0), not '{value}'.")


def mode_word(mode: str, what: str) -> str:
    """The motion mode lower-cased (a spreadsheet cell may say 'Relative'), checked as animate checks it."""
    word = str(mode).strip().lower()
    check_mode(word, what)
    return word


def check_output_name(name: str, where: str) -> str:
    """A name inside the output folder, '/'-separated: no absolute path, drive, '..' or hidden part; no part a
    file system refuses or shows as something else (a reserved Windows name such as con.mp4, a control or bidi
    character, a part over NAME_BYTES); the suffix of a video this writes ('.mp4' is added to a name without one)."""
    text = str(name).strip().replace("\\", "/")
    parts = PurePosixPath(text).parts
    if (not parts or PurePosixPath(text).is_absolute() or PureWindowsPath(str(name)).drive
            or any(p in ("..", ".") or p.startswith(".") for p in parts)):
        raise UserError(f"{where}: the output name '{_shown(name)}' must be a file name inside the output folder "
                        "(no absolute path, drive, '..' or name starting with a dot).")
    bad = next((c for c in text if _refused_character(c)), None)
    if bad is not None:
        raise UserError(f"{where}: the output name '{_shown(name)}' has a character file systems refuse or that "
                        f"shows text in another order (U+{ord(bad):04X}).")
    for part in parts:
        _check_part(part, name, where)
    path = PurePosixPath(*parts)
    if not path.suffix:
        path = path.with_name(path.name + ".mp4")
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise UserError(f"{where}: the output name '{_shown(name)}' must end in a video extension this writes "
                        f"({', '.join(WRITABLE_SUFFIXES)}).")
    if len(os.fsencode(path.as_posix())) > PATH_BYTES:
        raise UserError(f"{where}: the output name '{_shown(name)}' is over {PATH_BYTES} bytes; shorten it.")
    return path.as_posix()


def _check_part(part: str, name: str, where: str) -> None:
    """One folder or file name of an output name: not a Windows device, not ending in what Windows drops, short."""
    if _reserved(part):
        raise UserError(f"{where}: the output name '{_shown(name)}' uses '{part}', a name Windows keeps for a "
                        "device (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension); choose another.")
    if part.endswith((" ", ".")):
        raise UserError(f"{where}: the output name '{_shown(name)}' has a part ending in a space or a dot, "
                        "which Windows drops; remove it.")
    if len(os.fsencode(part)) > NAME_BYTES:
        raise UserError(f"{where}: the output name '{_shown(name)}' has a part over {NAME_BYTES} bytes; file "
                        "systems refuse long names (with the writer's temporary suffix), so shorten it.")


def _refused_character(c: str) -> bool:
    """What Windows refuses in a name, control characters, line separators, the bidi controls that show a name
    in another order (U+202E makes 'x\u202e4pm.exe' look like 'xexe.mp4'), and surrogates other than the escapes
    Python gives a POSIX name's undecodable bytes (U+DC80..U+DCFF, which round-trip)."""
    if c in '<>:"|?*' or c in BIDI_CONTROLS:
        return True
    category = unicodedata.category(c)
    if category == "Cs":
        return not "\udc80" <= c <= "\udcff"
    return category in ("Cc", "Zl", "Zp")


def _reserved(part: str) -> bool:
    """Windows' device names, whatever follows the first dot and whatever the case (com1.tar.mp4 too)."""
    return part.split(".")[0].rstrip(" ").upper() in WINDOWS_DEVICES


def _shown(name) -> str:
    """A name as a sentence shows it: controls and bidi characters escaped, so the sentence reads as written."""
    text = "".join(c.encode("unicode_escape").decode("ascii") if _refused_character(c) else c for c in str(name))
    return text if len(text) <= 80 else text[:77] + "..."


def _column(name) -> str:
    return str(name or "").strip().lower().replace("-", "_").replace(" ", "_")


def _near(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _optional_path(base: Path, value: Optional[str]) -> Optional[str]:
    """A checkpoint or config: a path read from the jobs file's folder when one is there, else the name as given
    (a known name such as 'vox', or a path the store reports as missing)."""
    if value is None:
        return None
    near = _near(base, value)
    return str(near) if near.exists() else value


def _cells(values: dict, where: str) -> dict:
    """The given cells as typed values: booleans read, text stripped, empty cells left out."""
    given = {}
    for name, value in values.items():
        if isinstance(value, str):
            value = value.strip()
        if name in BOOLEANS:
            value = _boolean(value, name, where)
        elif value is not None and not isinstance(value, str):
            raise UserError(f"{where}: {name} must be text, not {json.dumps(value)[:40]}.")
        if value not in (None, ""):
            given[name] = value
    return given


def job_from_fields(values: dict, base: Path, row: int, defaults: Job, where: str) -> Job:
    """One job from a row's cells (names already normalised; empty cells are None)."""
    unknown = sorted(set(values) - set(COLUMNS))
    if unknown:
        raise UserError(f"{where}: unknown column '{unknown[0]}' (the columns are {', '.join(COLUMNS)}).")
    changes = _cells(values, where)
    for required in ("source", "driving"):
        if required not in changes:
            raise UserError(f"{where}: no {required} given; every job needs a source image and a driving video.")
    source, driving = _near(base, changes.pop("source")), _near(base, changes.pop("driving"))
    changes["mode"] = mode_word(changes.get("mode", defaults.mode), f"{where}: mode")
    if changes.get("side_by_side", defaults.side_by_side) and changes.get("paste_back", defaults.paste_back):
        raise UserError(f"{where}: side_by_side and paste_back cannot be combined: choose one layout.")
    changes["output"] = check_output_name(changes.get("output") or default_output(source, driving), where)
    for name in ("checkpoint", "config"):
        if name in changes:
            changes[name] = _optional_path(base, changes[name])
    return replace(defaults, source=source, driving=driving, row=row, **changes)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"the jobs file {path} does not exist." if not path.exists() else
                        f"{path} is a folder; give a jobs file (.csv or .jsonl), or use --sources and --driving.")
    if path.stat().st_size > MAX_JOBS_FILE:
        raise UserError(f"the jobs file {path} is over {byte_size(MAX_JOBS_FILE)}: not a list of jobs.")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # Excel's 'CSV UTF-8' starts with a byte-order mark
    except UnicodeDecodeError:
        raise UserError(f"the jobs file {path} is not UTF-8 text; save it as UTF-8 (in Excel: 'CSV UTF-8').") \
            from None


def _csv_rows(text: str, name: str):
    """(row number, {column: cell}) per non-empty CSV row; rows whose first cell starts with '#' are comments."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    for cells in reader:
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [_column(c) for c in cells]
            if "source" not in header or "driving" not in header:
                raise UserError(f"{name} row {reader.line_num}: the first row must name the columns, with at least "
                                "source and driving.")
            continue
        where = f"{name} row {reader.line_num}"
        if len(cells) > len(header):
            raise UserError(f"{where}: {len(cells)} cells under {len(header)} column names (a comma inside a "
                            "name needs quotes).")
        yield reader.line_num, where, {h: (c if c.strip() else None) for h, c in zip(header, cells)}


def _json_rows(text: str, name: str):
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{name} line {number}"
        try:
            value = json.loads(line)
        except ValueError:
            raise UserError(f"{where} is not a JSON object (JSON lines: one object such as "
                            '{"source": "a.jpg", "driving": "b.mp4"} per line).') from None
        if not isinstance(value, dict):
            raise UserError(f"{where} is not a JSON object but {type(value).__name__}.")
        yield number, where, {_column(k): v for k, v in value.items()}


def read_jobs(path: Path, defaults: Job) -> list[Job]:
    """Every job of a CSV or JSON-lines file (told apart by the suffix, else by a first '{'), checked whole."""
    path = Path(path)
    text = _read_text(path)
    is_json = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    rows = _json_rows(text, path.name) if is_json else _csv_rows(text, path.name)
    base = path.resolve().parent
    jobs = [job_from_fields(values, base, row, defaults, where) for row, where, values in rows]
    if not jobs:
        raise UserError(f"the jobs file {path} holds no job.")
    return check_unique(jobs)


def folder_jobs(sources: Path, driving: Path, defaults: Job) -> list[Job]:
    """Every photo of `sources` x every video of `driving` (not recursive; sorted by name)."""
    photos = _files(Path(sources).absolute(), IMAGE_EXTENSIONS, "photos", "--sources")
    videos = _files(Path(driving).absolute(), VIDEO_EXTENSIONS, "videos", "--driving")
    jobs = [replace(defaults, source=s, driving=d, output=check_output_name(default_output(s, d), s.name))
            for s in photos for d in videos]
    return check_unique(jobs)


def _files(folder: Path, suffixes, what: str, flag: str) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{flag} {folder} is not a folder." if folder.exists() else
                        f"{flag} {folder} does not exist.")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())
    if not found:
        raise UserError(f"{flag} {folder} holds no {what} ({', '.join(suffixes)}).")
    return found


def check_unique(jobs: list[Job]) -> list[Job]:
    """Refuse two jobs writing one file (compared without case: Windows and macOS would make them one)."""
    seen: dict[str, Job] = {}
    for job in jobs:
        key = job.output.casefold()
        if key in seen:
            first = seen[key]
            raise UserError(f"{first.where} and {job.where} would both write {job.output}; give one of them "
                            "another output name.")
        seen[key] = job
    return jobs
