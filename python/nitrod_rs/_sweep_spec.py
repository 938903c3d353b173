"""A sweep's spec (:mod:`nitrod_rs.sweep`): reading it (JSON, TOML or a mapping), checking it
before any work, expanding it into runs, each with a folder name made from its settings, and
the model and ``fit`` keywords of one run.

Every mistake is a :class:`SweepSpecError` that names where it is (``grid.lr_inv[1]``,
``runs[2].model``) and what is accepted. The run settings are ``model``, ``dataset``,
``limit``, ``test_limit``, ``dropout`` and every keyword of ``fit`` whose value JSON can hold,
read off ``fit``'s signature, so that the spec accepts what ``fit`` accepts.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import itertools
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _checks, _core, _protocol
from ._paths import PathLike

#: The keys of a spec: the seeds, the settings every run shares, a grid and a list of runs.
SPEC_KEYS = ("seeds", "base", "grid", "runs")

#: ``fit``'s keywords that the sweep sets itself (the data, the files, the display, the seed,
#: the threads, where a run starts), never a run's setting; ``settings`` (a bundle of the
#: others) where ``fit`` has it: the spec is the bundle. ``workers`` (data-parallel training
#: on Ray actors) is not a run's setting either: a sweep already spreads its runs over the
#: cluster, one Ray task of ``threads`` CPUs each, and actors started inside a task would take
#: CPUs the sweep does not account for (with a full cluster, tasks would wait for actors that
#: cannot start); the results would be the same bits anyway.
_OWNED = frozenset({"self", "x", "y", "validation_data", "test_data", "progress", "verbose",
                    "callbacks", "checkpoint", "checkpoint_every", "resume", "initial_epoch",
                    "seed", "threads", "settings", "workers"})

#: JSON's value kinds by the names of ``fit``'s annotations (``Mapping[...]``: an object;
#: ``Any``: any value, which ``fit`` checks when the run starts); a keyword whose annotation
#: names anything else (an array, a callable) is not a run setting.
_KINDS = {"int": "int", "bool": "bool", "float": "number", "str": "str", "None": "null",
          "tuple[int, bool]": "pair", "Any": "any"}

#: How each kind reads in a message.
_WORDS = {"int": "an integer", "bool": "true or false", "number": "a number", "str": "a string",
          "null": "null", "pair": "a [pad, flip] pair", "object": "an object",
          "model": "a preset name or an object with 'kind'", "any": "a value"}

#: The run settings that are not ``fit`` keywords: the model, the data and the model's dropout.
_EXTRA = {"model": ("model",), "dataset": ("str",), "limit": ("int",), "test_limit": ("int",),
          "dropout": ("int", "number")}


class SweepSpecError(ValueError):
    """A sweep spec that cannot run: the message says where and what to write instead."""


def _fit_kinds() -> dict[str, tuple[str, ...]]:
    from .models import MLP

    kinds: dict[str, tuple[str, ...]] = {}
    for name, p in inspect.signature(MLP.fit).parameters.items():
        if name in _OWNED:
            continue
        parts = [a.strip() for a in str(p.annotation).split("|")]
        named = ["object" if a.startswith("Mapping[") else _KINDS.get(a) for a in parts]
        if all(named):
            kinds[name] = tuple(k for k in named if k is not None)
    return kinds


_SETTING_KINDS: dict[str, tuple[str, ...]] | None = None


def setting_kinds() -> dict[str, tuple[str, ...]]:
    """Every run setting and the JSON kinds of its value."""
    global _SETTING_KINDS
    if _SETTING_KINDS is None:
        _SETTING_KINDS = {**_EXTRA, **_fit_kinds()}
    return _SETTING_KINDS


def _is(kind: str, v: Any) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "null":
        return v is None
    if kind == "pair":
        return (isinstance(v, (list, tuple)) and len(v) == 2 and _is("int", v[0])
                and _is("bool", v[1]))
    if kind in ("object", "model"):
        return isinstance(v, Mapping) or (kind == "model" and isinstance(v, str))
    if kind == "any":
        return True
    raise AssertionError(kind)


def _type_name(v: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             type(None): "null", list: "a list", tuple: "a list", dict: "an object"}
    return names.get(type(v), type(v).__name__)


def _words(kinds: Sequence[str]) -> str:
    w = [_WORDS[k] for k in kinds]
    return w[0] if len(w) == 1 else ", ".join(w[:-1]) + " or " + w[-1]


def _unknown(key: str, where: str, known: Sequence[str]) -> SweepSpecError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SweepSpecError(f"{where}: unknown key {key!r}{hint}; the keys are "
                          + ", ".join(known))


def _setting(key: str, value: Any, where: str) -> Any:
    """One run setting, checked for its JSON kind; returned as ``fit`` takes it."""
    kinds = setting_kinds()
    if key == "seed":
        raise SweepSpecError(f"{where}: the seeds are the spec's top-level 'seeds' (a count or "
                             "a list), not a run setting")
    if key not in kinds:
        raise _unknown(key, where, sorted(kinds))
    matched = [k for k in kinds[key] if _is(k, value)]
    if not matched:
        raise SweepSpecError(f"{where}.{key}: expected {_words(kinds[key])}, got "
                             f"{_type_name(value)} ({json.dumps(value, default=repr)})")
    if key == "model":
        return _model(value, f"{where}.model")
    if key == "dataset":
        return _dataset(value, f"{where}.dataset")
    if matched[0] == "pair":  # augment's (pad, flip): a tuple for fit, a list in JSON
        return (int(value[0]), bool(value[1]))
    return value


def _model(value: Any, where: str) -> str | dict[str, Any]:
    """A preset's name, or a custom architecture: ``{"kind": "mlp"|"cnn", ...}`` with the
    keywords of :class:`~nitrod_rs.MLP` or :class:`~nitrod_rs.CNN` (not ``seed``)."""
    from . import presets
    from .models import CNN, MLP

    if isinstance(value, str):
        name = value.lower().replace("_", "-")
        if name not in presets.PRESETS:
            raise SweepSpecError(f"{where}: unknown preset {value!r}; the presets are "
                                 f"{', '.join(presets.PRESETS)}, or give an architecture "
                                 "such as {\"kind\": \"mlp\", \"layers\": [784, 100, 10]}")
        return name
    spec = dict(value)
    kind = spec.pop("kind", None)
    if kind not in ("mlp", "cnn"):
        raise SweepSpecError(f"{where}: an architecture needs \"kind\": \"mlp\" or \"cnn\", "
                             f"got {kind!r}")
    init = MLP.__init__ if kind == "mlp" else CNN.__init__
    known = sorted(k for k in inspect.signature(init).parameters if k not in ("self", "seed"))
    for k in spec:
        if k == "seed":
            raise SweepSpecError(f"{where}: the seeds are the spec's top-level 'seeds', not "
                                 "a model setting")
        if k not in known:
            raise _unknown(k, where, ["kind", *known])
    return {"kind": kind, **spec}


def _dataset(value: str, where: str) -> str:
    from .datasets import canonical_name

    try:
        return canonical_name(value)
    except ValueError as exc:
        raise SweepSpecError(f"{where}: {exc}") from None


def _settings(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepSpecError(f"{where}: expected an object of run settings, got "
                             f"{_type_name(value)}")
    return {str(k): _setting(str(k), v, where) for k, v in value.items()}


# -- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A checked spec: ``seeds``; ``base`` (settings of every run); ``grid`` (a setting → its
    values, every combination run); ``runs`` (a list of settings, each combined with the
    grid; ``None``: one entry, the base alone)."""

    seeds: tuple[int, ...]
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    runs: list[dict[str, Any]] | None


def read(path: PathLike) -> dict[str, Any]:
    """A spec file: JSON (``.json``) or TOML (``.toml``)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        what = suffix or "a file without an extension"
        raise SweepSpecError(f"{p}: a sweep spec is a .json or .toml file, not {what}")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepSpecError(f"{p}: no such spec file") from None
    try:
        doc = json.loads(text) if suffix == ".json" else _toml(p, text)
    except SweepSpecError:
        raise
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise SweepSpecError(f"{p}: not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(doc, dict):
        raise SweepSpecError(f"{p}: a sweep spec is an object with the keys "
                             f"{', '.join(SPEC_KEYS)}, got {_type_name(doc)}")
    return doc


def _toml(p: Path, text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    raise SweepSpecError(f"{p}: reading TOML needs Python 3.11 or later (tomllib); write the "
                         "spec as JSON")


def _seeds(value: Any) -> tuple[int, ...]:
    if _is("int", value):
        if value < 1:
            raise SweepSpecError(f"seeds: a count of seeds must be at least 1, got {value}")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise SweepSpecError("seeds: expected a count (10: seeds 0 to 9) or a non-empty list of "
                             f"seeds, got {json.dumps(value, default=repr)}")
    for i, s in enumerate(value):
        if not _is("int", s) or not 0 <= s < 2**64:
            raise SweepSpecError(f"seeds[{i}]: a seed is an integer from 0 to 2^64 - 1, got "
                                 f"{json.dumps(s, default=repr)}")
    dup = sorted({s for s in value if value.count(s) > 1})
    if dup:
        raise SweepSpecError(f"seeds: {dup} given more than once: each run would be trained "
                             "twice; list each seed once")
    return tuple(value)


def parse(doc: Mapping[str, Any]) -> Spec:
    """Check the keys and the value types of a spec (a mapping, as read from its file)."""
    if not isinstance(doc, Mapping):
        raise SweepSpecError(f"a sweep spec is an object with the keys {', '.join(SPEC_KEYS)}, "
                             f"got {_type_name(doc)}")
    for k in doc:
        if k not in SPEC_KEYS:
            raise _unknown(str(k), "the spec", SPEC_KEYS)
    seeds = _seeds(doc.get("seeds", 1))
    base = _settings(doc.get("base", {}), "base")
    grid: dict[str, list[Any]] = {}
    if "grid" in doc:
        g = doc["grid"]
        if not isinstance(g, Mapping):
            raise SweepSpecError(f"grid: expected an object (a setting and its list of values), "
                                 f"got {_type_name(g)}")
        if not g:
            raise SweepSpecError("grid: empty; give a setting and its list of values, such as "
                                 "\"grid\": {\"lr_inv\": [512, 1024]}, or leave the grid out")
        for key, values in g.items():
            if not isinstance(values, list):
                raise SweepSpecError(f"grid.{key}: expected a list of values, got "
                                     f"{_type_name(values)}; write [{json.dumps(values)}] for "
                                     "one value, or put it in base")
            if not values:
                raise SweepSpecError(f"grid.{key}: empty; give at least one value")
            grid[str(key)] = [_grid_value(str(key), v, i) for i, v in enumerate(values)]
    runs: list[dict[str, Any]] | None = None
    if "runs" in doc:
        r = doc["runs"]
        if not isinstance(r, list):
            raise SweepSpecError(f"runs: expected a list of run settings, got {_type_name(r)}")
        if not r:
            raise SweepSpecError("runs: empty; give at least one run's settings, or leave runs "
                                 "out")
        runs = [_settings(entry, f"runs[{i}]") for i, entry in enumerate(r)]
        for i, entry in enumerate(runs):
            both = sorted(set(entry) & set(grid))
            if both:
                raise SweepSpecError(f"runs[{i}] and the grid both set {', '.join(both)}: "
                                     "give each setting in one place")
    return Spec(seeds, base, grid, runs)


def _grid_value(key: str, value: Any, i: int) -> Any:
    """Value ``i`` of the grid's ``key``, checked as that setting (named ``grid.key[i]``)."""
    try:
        return _setting(key, value, "grid")
    except SweepSpecError as exc:
        msg = str(exc)
        # Name the value's place in the list: grid.lr_inv -> grid.lr_inv[1].
        raise SweepSpecError(msg.replace(f"grid.{key}", f"grid.{key}[{i}]", 1)
                             if msg.startswith(f"grid.{key}") else msg) from None


# -- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its ``settings`` (as given, the model and data set named
    canonically), its ``seed``, the ``name`` of its folder, where the spec gives it
    (``origin``), its configuration (``config``: the settings as canonical JSON, what the
    table groups the seeds by) and the model's name in the table (``label``)."""

    settings: dict[str, Any]
    seed: int
    name: str
    origin: str
    config: str
    label: str


def canonical(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=list)


def model_label(model: str | Mapping[str, Any]) -> str:
    """A model's name in folder names and tables: the preset's, or the architecture's kind
    and widths (``mlp-784-32-10``; a CNN: ``cnn``)."""
    if isinstance(model, str):
        return model
    if model["kind"] == "mlp" and "layers" in model:
        return "mlp-" + "-".join(str(w) for w in model["layers"])
    return str(model["kind"])


_SAFE = re.compile(r"^[A-Za-z0-9.+-]+$")
#: Folder names stay well below the 255 bytes file systems allow.
_MAX_NAME = 120


def value_text(v: Any) -> str:
    """A setting's value as written in folder names and tables."""
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"), default=list)


def folder_name(settings: Mapping[str, Any], seed: int) -> str:
    """The folder of a run, from its settings alone: ``<model>_<dataset>_<key>=<value>…_seed=
    <n>``, the other keys in alphabetical order; where that cannot say every setting exactly
    (an architecture beyond an MLP's widths, a value with other characters, a long name), a
    hash of the settings follows."""
    model = settings["model"]
    label = model_label(model)
    exact = isinstance(model, str) or set(model) <= {"kind", "layers"} and model["kind"] == "mlp"
    parts = [label, settings["dataset"]]
    for k in sorted(settings):
        if k in ("model", "dataset"):
            continue
        text = value_text(settings[k])
        if not _SAFE.match(text):
            exact = False
            text = re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")
        parts.append(f"{k}={text}")
    parts.append(f"seed={seed}")
    name = "_".join(parts)
    if exact and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(canonical({"settings": settings, "seed": seed}).encode())
    return name[:_MAX_NAME - 9] + "_" + digest.hexdigest()[:8]


def _origin(i: int | None, combo: Mapping[str, Any]) -> str:
    where = [] if i is None else [f"runs[{i}]"]
    if combo:
        where.append("grid " + ", ".join(f"{k}={value_text(v)}" for k, v in combo.items()))
    return " × ".join(where) or "base"


def expand(spec: Spec) -> list[Run]:
    """Every run of ``spec``: each entry of ``runs`` (or the base alone) × each combination of
    the grid × each seed, in that order, each configuration checked (:func:`resolve`) before
    any work. Two runs with the same settings and seed are an error."""
    keys = list(spec.grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*spec.grid.values())]
    entries: list[tuple[int | None, dict[str, Any]]] = (
        [(None, {})] if spec.runs is None else list(enumerate(spec.runs)))
    runs: list[Run] = []
    seen: dict[tuple[str, int], str] = {}
    for i, entry in entries:
        for combo in combos:
            origin = _origin(i, combo)
            settings = {**spec.base, **entry, **combo}
            settings = complete(settings, origin)
            config = canonical(settings)
            for seed in spec.seeds:
                key = (config, seed)
                if key in seen:
                    raise SweepSpecError(
                        f"{seen[key]} and {origin} give the same run ({describe(settings)}, "
                        f"seed {seed}): remove one of them")
                seen[key] = origin
                runs.append(Run(settings, seed, folder_name(settings, seed), origin, config,
                                model_label(settings["model"])))
    names: dict[str, Run] = {}
    for r in runs:
        if r.name in names:  # pragma: no cover - distinct settings, same hash prefix
            raise SweepSpecError(f"{names[r.name].origin} and {r.origin} would share the "
                                 f"folder {r.name}")
        names[r.name] = r
    return runs


def describe(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {value_text(v)}" for k, v in settings.items())


def complete(settings: dict[str, Any], origin: str) -> dict[str, Any]:
    """A configuration's settings with the data set named (the preset's when none is given),
    checked by building its model and settings; errors name ``origin``."""
    if "model" not in settings:
        raise SweepSpecError(f"{origin}: no model; set \"model\" (a preset such as \"mlp1\", or "
                             "an architecture) in base, a run or the grid")
    if "epochs" not in settings:
        raise SweepSpecError(f"{origin}: no epochs; set \"epochs\" in base, a run or the grid")
    model = settings["model"]
    if "dataset" not in settings:
        if not isinstance(model, str):
            raise SweepSpecError(f"{origin}: an architecture has no data set of its own; set "
                                 "\"dataset\"")
        from . import presets

        settings = {**settings, "dataset": presets.DEFAULT_DATASET[model]}
    try:
        resolve(settings, 0)
    except SweepSpecError as exc:
        raise SweepSpecError(f"{origin}: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise SweepSpecError(f"{origin} ({describe(settings)}): {exc}") from None
    return settings


# -- one run's model and fit keywords --------------------------------------------------------


#: The settings that choose the protocol (:mod:`nitrod_rs._protocol`), applied after the rest,
#: and those that may be set against it (then ``fit``'s own check speaks).
_PROTOCOL = ("validation_split", "paper_protocol")
_WATCHERS = ("plateau", "early_stopping")


def resolve(settings: Mapping[str, Any], seed: int) -> tuple[Any, dict[str, Any]]:
    """The fresh model of a run and its ``fit`` keywords (without the data, files, display
    and threads), checked as far as that can be without data: the preset's settings, then
    the run's, then the protocol (the presets' validation split unless the run says
    otherwise; ``validation_split`` 0 or null: none)."""
    from . import presets
    from .models import CNN, MLP

    model_spec = settings["model"]
    dropout = settings.get("dropout")
    kw: dict[str, Any]
    if isinstance(model_spec, str):
        model, kw = presets.preset(model_spec, settings["dataset"], seed=seed)
        if dropout is not None:
            if not isinstance(model, MLP):
                raise SweepSpecError(f"dropout: the CNN preset {model_spec} has its own "
                                     "dropout layers; to change them, give the architecture "
                                     "({\"kind\": \"cnn\", ...})")
            cfg = model.config
            model = MLP([cfg["inputs"], *cfg["hidden"], cfg["classes"]],
                        activation=cfg["activation"], slope=cfg["slope"], dropout=dropout,
                        seed=seed, bias=cfg["bias"], init=cfg["init"])
    else:
        args = {k: v for k, v in model_spec.items() if k != "kind"}
        if dropout is not None:
            if "dropout" in args:
                raise SweepSpecError("dropout is given twice, in the model and as a setting: "
                                     "give it once")
            args["dropout"] = dropout
        model = (MLP if model_spec["kind"] == "mlp" else CNN)(**args, seed=seed)
        kw = {}
    fit_keys = set(setting_kinds()) - set(_EXTRA)
    kw.update({k: v for k, v in settings.items()
               if k in fit_keys and k not in _PROTOCOL and k not in _WATCHERS})
    split = settings.get("validation_split", "default")
    _protocol.apply(kw, paper_protocol=bool(settings.get("paper_protocol", False)),
                    validation_split=None if split == "default" else (split or 0))
    kw.update({k: settings[k] for k in _WATCHERS if k in settings})
    _check_fit(kw, settings)
    return model, kw


def _check_fit(kw: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """What ``fit`` checks before it sees data, checked here before any run starts."""
    for key in ("epochs", "batch_size"):
        _checks.check_int(kw.get(key, 1), key, minimum=1)
    for key in ("limit", "test_limit"):
        if key in settings:
            _checks.check_int(settings[key], key, minimum=1)
    _checks.check_int(kw.get("validation_seed", 0), "validation_seed", minimum=0)
    defaults = _checks.DEFAULTS["hyper"]
    hyper = _checks.hyper({k: defaults[k] if kw.get(k) is None else kw[k] for k in defaults})
    try:
        _core.TrainSettings(epochs=1, **{k: v for k, v in hyper.items() if k != "compat"})
    except (ValueError, OverflowError) as exc:
        raise SweepSpecError(f"lr_inv {hyper['lr_inv']} with lr_amp_factor "
                             f"{hyper['lr_amp_factor']} does not fit the engine ({exc}): "
                             "choose smaller values") from None
    permille = _checks.validation_split(kw.get("validation_split"))
    paper = bool(kw.get("paper_protocol", False))
    watches = bool(kw.get("plateau")) or bool(kw.get("early_stopping"))
    _checks.selection(None, permille, True, paper, watches)


def results_dir(path: PathLike) -> str:
    """The results folder as an absolute path (the workers may run elsewhere)."""
    return os.path.abspath(os.fspath(path))
