"""One typed configuration: defaults < TOML file < environment < command line.

Unknown or misspelled keys are rejected with the nearest valid key named. `resolve` also
records where every value came from, which `recsemble config show` prints.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS
from recsemble.ranking.config import EnsembleConfig
from recsemble.rerank.config import RerankConfig, check_stage_names
from recsemble.strict import StrictConfig

#: Names `evaluate.models` accepts beside the generators.
COMPOSITE_MODELS = ("ensemble",)


class _Section(StrictConfig):
    pass


class DataConfig(_Section):
    dataset: str = "synthetic"  # a MovieLens name, 'synthetic', or a path
    data_dir: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # our column name -> file's
    # Weight of each event type, e.g. {view = 1, cart = 3, purchase = 5}. Unset: the loader's
    # own (synthetic: view=1, cart=3, purchase=5; others: every event weighs 1). Set: an event
    # type in the data that is missing here is an error.
    event_weights: dict[str, float] | None = None
    min_value: float | None = None  # keep only interactions with value >= this


class ProtocolConfig(_Section):
    name: Literal["temporal-user", "temporal-global"] = "temporal-user"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    min_user_interactions: int = Field(5, ge=1)
    k: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [10], min_length=1)
    bootstrap_resamples: int = Field(1000, ge=10)
    seed: int = 0

    @field_validator("k")
    @classmethod
    def _sorted_cutoffs(cls, k: list[int]) -> list[int]:
        """Ascending and once each, as `--k` gives them: the first is the headline cut-off."""
        return sorted(set(k))


class EvaluateConfig(_Section):
    models: list[str] = Field(default_factory=lambda: ["pop", "pop-trending"])
    baseline: str = "pop"
    # Re-ranking stages applied to every model in `models`, reported as "<model>+<stages>".
    rerank: list[str] = Field(default_factory=list)
    # Knob sweeps such as "rerank.mmr.lambda=0:1:0.1" (start:stop:step or a,b,c).
    sweep: list[str] = Field(default_factory=list)
    # The models `rerank` and `sweep` apply to (default: every model in `models`).
    rerank_models: list[str] | None = None
    # When "ensemble" is evaluated: also measure its members' overlap, marginal gains, pruning
    # curve and calibration on the same split (written to results.json for the report). The
    # analysis refits ~M^2/2 cheap rankers, so it is off unless asked for.
    analyze: bool = False
    # The analysis on a seeded random sample of this many evaluated users (None: all of them):
    # its cost grows with users x candidates x the ranker refits.
    analysis_users: int | None = Field(None, ge=10)


class RecsembleConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)

    def model_config_for(self, name: str) -> Any:
        """The validated config object of generator `name`."""
        return GENERATORS[name].Config.model_validate(self.models.get(name, {}))


Source = str  # "default", "file <path>", "env NAME" or "cli"


@dataclass(frozen=True)
class ResolvedConfig:
    config: RecsembleConfig
    sources: dict[str, Source]

    def rows(self) -> list[tuple[str, Any, Source]]:
        """(dotted key, value, source) for every leaf, sorted by key (members[2] before [10])."""
        flat = _flatten(self.config.model_dump(by_alias=True))
        for name in self.config.models:
            flat.update(_flatten(self.config.model_config_for(name).model_dump(), f"models.{name}"))
        return [(key, flat[key], self._source(key)) for key in sorted(flat, key=_natural)]

    def _source(self, key: str) -> Source:
        """Where `key` was set: it or the list it is in (ensemble.members[2].model comes with
        the members list that set it)."""
        while key:
            if key in self.sources:
                return self.sources[key]
            if "[" not in key:
                return "default"
            key = key[: key.rindex("[")]
        return "default"


ENV_KEYS = {"RECSEMBLE_DATA": "data.data_dir", "RECSEMBLE_DATASET": "data.dataset"}


def resolve(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """Merge defaults, the TOML file at `path`, environment variables and dotted CLI overrides."""
    merged: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    if path is not None:
        file_data = _read_toml(Path(path))
        _check_keys(file_data, f"{path}")
        _merge(merged, file_data, sources, f"file {path}")
    env = os.environ if env is None else env
    for var, key in ENV_KEYS.items():
        if env.get(var):
            _merge(merged, _nest(key, env[var]), sources, f"env {var}")
    for key, value in (overrides or {}).items():
        nested = _override(merged, key, value)
        _check_keys(nested, "command line")
        _merge(merged, nested, sources, "cli")
    try:
        config = RecsembleConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc)) from None
    for name in config.models:
        try:
            config.model_config_for(name)
        except ValidationError as exc:  # located: userknn has a `neighbors` too
            raise ConfigError(_describe_validation(exc, f"models.{name}")) from None
    known = [*GENERATORS, *COMPOSITE_MODELS]
    for name in [*config.evaluate.models, config.evaluate.baseline]:
        if name not in known:
            raise ConfigError(f"evaluate: unknown model {name!r}{_suggest(name, known, 'models')}")
    check_stage_names(config.evaluate.rerank)
    check_stage_names(config.rerank.stages)
    return ResolvedConfig(config, sources)


def parse_override(text: str) -> tuple[str, Any]:
    """'protocol.k=[10,20]' -> ('protocol.k', [10, 20]); values are TOML, else plain strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:  # tomllib decodes the bytes itself: a binary file lands here
        raise ConfigError(f"config file {path} is not TOML (not UTF-8 text)") from None
    except OSError as exc:  # e.g. a folder
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror or exc})") from None


def _valid_keys(model: type[BaseModel]) -> dict[str, str]:
    """Key as written in a config (the alias, e.g. "lambda") -> field name."""
    return {field.alias or name: name for name, field in model.model_fields.items()}


def _suggest(key: str, valid: list[str], what: str = "valid keys") -> str:
    by_case = [name for name in valid if name.lower() == key.lower()]  # POP -> pop
    close = by_case or difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{hint} {what}: {', '.join(sorted(valid))}"


def _check_keys(data: Mapping[str, Any], where: str) -> None:
    """Reject unknown keys at any depth, naming the nearest valid one."""
    _check_section(data, RecsembleConfig, "", where)


def _check_section(
    data: Mapping[str, Any], model: type[BaseModel], prefix: str, where: str
) -> None:
    valid = _valid_keys(model)
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {dotted!r}{_suggest(key, list(valid))}")
        annotation = model.model_fields[valid[key]].annotation
        if dotted == "models":
            _check_models(value, where)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {dotted!r} must be a table of keys")
            _check_section(value, annotation, f"{dotted}.", where)


def _check_models(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: 'models' must be a table of [models.<name>] sections")
    for name, params in value.items():
        if name not in GENERATORS:
            raise ConfigError(
                f"{where}: unknown model {name!r}{_suggest(name, list(GENERATORS), 'models')}"
            )
        if not isinstance(params, Mapping):
            raise ConfigError(f"{where}: 'models.{name}' must be a table of keys")
        _check_section(params, GENERATORS[name].Config, f"models.{name}.", where)


#: Tables that are one value (a file's table replaces another's), but a dotted override
#: of one key (`--set data.event_weights.purchase=10`) changes that key only.
_LEAF_TABLES = ("data.columns", "data.event_weights")


def _override(merged: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The nested form of one dotted override, merged into its leaf table when it names a
    key inside one."""
    for table in _LEAF_TABLES:
        if key.startswith(table + "."):
            section, name = table.split(".")
            current = merged.get(section, {}).get(name)
            entries = dict(current) if isinstance(current, Mapping) else {}
            entries[key.removeprefix(table + ".")] = value
            return _nest(table, entries)
    return _nest(key, value)


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    parts = dotted.split(".")
    # models.<name> may contain dots-free names with dashes; split on the first two dots only
    if parts[0] == "models" and len(parts) > 3:
        parts = [parts[0], parts[1], ".".join(parts[2:])]
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def _merge(
    into: dict[str, Any],
    new: Mapping[str, Any],
    sources: dict[str, Source],
    src: Source,
    prefix: str = "",
) -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in _LEAF_TABLES:
            _merge(into.setdefault(key, {}), value, sources, src, f"{dotted}.")
        else:
            into[key] = value
            sources[dotted] = src


def _natural(key: str) -> list[tuple[int, str]]:
    """Sort key reading the digit runs of `key` as numbers."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", key)]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if dotted == "models":
            continue
        if isinstance(value, Mapping) and dotted not in _LEAF_TABLES:
            out.update(_flatten(value, dotted))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, entry in enumerate(value):  # e.g. ensemble members: one row each
                out.update(_flatten(entry, f"{dotted}[{i}]"))
        else:
            out[dotted] = value
    return out


def _describe_validation(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join([prefix, *map(str, err["loc"])] if prefix else map(str, err["loc"]))
        message = err["msg"].removeprefix("Value error, ")  # pydantic's prefix says nothing
        lines.append(f"{loc}: {message} (got {err.get('input')!r})")
    return "invalid configuration: " + "; ".join(lines)
