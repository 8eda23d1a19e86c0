"""A character's own names for the 52 ARKit units, and how strongly each unit plays on it.

Why: many production characters carry the units' motion under their tool's names (Character
Creator's ``Eye_L_Look_Down``, Daz's ``facs_bs_MouthSmileLeft_div2``), or spread one unit over
several keys (Character Creator 4 Extended's four ``Mouth_Funnel_*``), which no spelling rule
(``models.arkit.match_units``) can guess. A ``UnitMap`` says which shape keys play each unit; with
none, keys are matched by name as before ("ARKit (automatic)"). It also holds the animator's gains
("more smile"): one per unit and one per face region (``REGIONS``), multiplied.

A key's value is the sum, over the units that play it, of gain × unit value, so units can share a
key: a custom ``Eyes_Up_Down`` key takes eyeLookUp at gain 1 and eyeLookDown at -1.

Unit maps are data: JSON files (built-in presets in ``models/unit_maps``, the user's own saved
from Blender), checked on the way in, so a typo is an error that names the entry and the file.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..ops.errors import MxrError
from .arkit import ARKIT_UNITS, match_units, normalised_unit_name

FORMAT_KEY = "mxr_unit_map"  # the field that marks a JSON file as a unit map, holding its version
VERSION = 1
MAX_GAIN = 10.0  # beyond this a gain is a typo, not an adjustment
BUILTIN_FOLDER = Path(__file__).resolve().parent / "unit_maps"  # tracked: models/data holds fetched assets

# Face regions for the region gains, by the units' ARKit prefixes; the tongue plays with the mouth.
_REGION_PREFIXES = {"brows": ("brow",), "eyes": ("eye",), "cheeks": ("cheek",), "nose": ("nose",),
                    "jaw": ("jaw",), "mouth": ("mouth", "tongue")}
REGIONS: dict[str, tuple[str, ...]] = {
    region: tuple(unit for unit in ARKIT_UNITS if unit.startswith(prefixes))
    for region, prefixes in _REGION_PREFIXES.items()
}
_REGION_OF = {unit: region for region, units in REGIONS.items() for unit in units}
_FIELDS = {FORMAT_KEY, "name", "source", "units", "unit_gains", "region_gains"}


class UnitMapError(MxrError):
    """A unit map that cannot be used as it is; the message names the entry at fault."""


def region_of(unit: str) -> str:
    """The face region ``unit`` belongs to (its region gain applies to it)."""
    return _REGION_OF[unit]


@dataclass(frozen=True)
class UnitMap:
    """Which shape keys play each ARKit unit, and the gains. Checked when made (UnitMapError)."""

    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # unit -> keys; empty: match by name
    unit_gains: dict[str, float] = field(default_factory=dict)  # unit -> gain (absent: 1)
    region_gains: dict[str, float] = field(default_factory=dict)  # region -> gain (absent: 1)
    name: str = ""
    source: str = ""  # where the names come from, for a preset

    def __post_init__(self) -> None:
        for unit, keys in self.targets.items():
            _check_unit(unit, "units")
            _check_keys(unit, keys)
        for unit, gain in self.unit_gains.items():
            _check_unit(unit, "unit_gains")
            _check_gain(gain, f"unit_gains: {unit}", -MAX_GAIN)
        for region, gain in self.region_gains.items():
            if region not in REGIONS:
                raise UnitMapError(f"region_gains: unknown region '{region}' (the regions: {', '.join(REGIONS)})")
            _check_gain(gain, f"region_gains: {region}", 0.0)

    @property
    def automatic(self) -> bool:
        """Whether keys are matched to units by their names (no targets given)."""
        return not self.targets

    def gain(self, unit: str) -> float:
        """How strongly ``unit`` plays: its own gain times its region's."""
        return self.unit_gains.get(unit, 1.0) * self.region_gains.get(region_of(unit), 1.0)

    def key_names(self) -> list[str]:
        """The keys the map plays, each once, in unit order."""
        return list(dict.fromkeys(key for keys in self.targets.values() for key in keys))

    def with_targets(self, targets: dict[str, tuple[str, ...]]) -> UnitMap:
        """The same gains, playing ``targets``."""
        return replace(self, targets=dict(targets))

    def key_values(self, values: np.ndarray, units: tuple[str, ...]) -> dict[str, np.ndarray]:
        """(T, K) unit values, columns in ``units`` order -> key name -> (T,) value: the sum, over
        the units the key plays, of gain × unit value."""
        column = {unit: index for index, unit in enumerate(units)}
        absent = [unit for unit in self.targets if unit not in column]
        if absent:
            raise UnitMapError(f"the head has no unit {', '.join(absent)} to play")
        played: dict[str, np.ndarray] = {}
        for unit, keys in self.targets.items():
            value = self.gain(unit) * np.asarray(values[:, column[unit]], dtype=np.float64)
            for key in keys:
                played[key] = played[key] + value if key in played else value
        return played


@dataclass(frozen=True)
class KeysOnCharacter:
    """A unit map narrowed to the keys a character has (``on_character``)."""

    unit_map: UnitMap  # its targets: keys the character has
    missing_keys: list[str]  # keys the map names that the character lacks: skipped
    duplicates: list[str]  # keys naming a unit an earlier key already plays (matching by name): skipped


def named_targets(key_names: list[str]) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Unit -> the key named as it (``models.arkit.match_units``), and the later keys that named a
    unit already matched: what matching by name (and "Auto-fill from names") plays."""
    matches, duplicates = match_units(key_names, ARKIT_UNITS)
    return {unit: (key,) for unit, key in matches.items()}, duplicates


def on_character(unit_map: UnitMap, key_names: list[str]) -> KeysOnCharacter:
    """``unit_map`` on a character with ``key_names``: matched by name when automatic, otherwise
    its targets without the keys the character lacks (a preset names keys some characters lack:
    the tongue on a mesh of its own, a unit the rig plays with bones)."""
    if unit_map.automatic:
        targets, duplicates = named_targets(key_names)
        return KeysOnCharacter(unit_map.with_targets(targets), [], duplicates)
    present = set(key_names)
    missing = [key for key in unit_map.key_names() if key not in present]
    kept = {unit: tuple(key for key in keys if key in present) for unit, keys in unit_map.targets.items()}
    return KeysOnCharacter(unit_map.with_targets({unit: keys for unit, keys in kept.items() if keys}), missing, [])


# -- JSON -----------------------------------------------------------------------------------------

def unit_map_to_json(unit_map: UnitMap) -> str:
    """The map as a preset file's text; a unit with one key has it as a string, gains of 1 are left out."""
    document = {
        FORMAT_KEY: VERSION, "name": unit_map.name, "source": unit_map.source,
        "units": {unit: keys[0] if len(keys) == 1 else list(keys)
                  for unit in ARKIT_UNITS if (keys := unit_map.targets.get(unit))},
        "unit_gains": {unit: gain for unit in ARKIT_UNITS if (gain := unit_map.unit_gains.get(unit, 1.0)) != 1.0},
        "region_gains": {region: gain for region in REGIONS
                         if (gain := unit_map.region_gains.get(region, 1.0)) != 1.0},
    }
    return json.dumps(document, indent=2) + "\n"


def unit_map_from_json(text: str, origin: str = "unit map") -> UnitMap:
    """The map in a preset file's text; UnitMapError, naming ``origin`` and the entry, if it is not one."""
    try:
        return _unit_map_of(_parsed(text))
    except UnitMapError as error:
        raise UnitMapError(f"{origin}: {error}") from None


def read_unit_map(path: Path) -> UnitMap:
    """The map in the JSON file ``path`` (UnitMapError if missing, unreadable or not a unit map)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UnitMapError(f"cannot read the unit map {path}: {error}") from None
    return unit_map_from_json(text, Path(path).name)


def write_unit_map(unit_map: UnitMap, path: Path) -> None:
    """Save ``unit_map`` as the JSON file ``path`` (its folder made if needed)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(unit_map_to_json(unit_map), encoding="utf-8")


def builtin_unit_maps() -> dict[str, UnitMap]:
    """The presets shipped with MXR, by file stem, "ARKit (automatic)" first."""
    paths = sorted(BUILTIN_FOLDER.glob("*.json"), key=lambda path: (path.stem != "arkit_automatic", path.stem))
    return {path.stem: read_unit_map(path) for path in paths}


def _parsed(text: str) -> dict:
    """The JSON object in ``text``, with the right format version and no unknown fields."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UnitMapError(f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    if not isinstance(document, dict) or FORMAT_KEY not in document:
        raise UnitMapError(f'not an MXR unit map (a JSON object with "{FORMAT_KEY}": {VERSION})')
    if document[FORMAT_KEY] != VERSION:
        raise UnitMapError(f"unit map version {document[FORMAT_KEY]!r}: this MXR reads version {VERSION}")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise UnitMapError(f"unknown field {', '.join(unknown)} (the fields: {', '.join(sorted(_FIELDS))})")
    return document


def _unit_map_of(document: dict) -> UnitMap:
    units = _object(document, "units")
    targets = {unit: _key_list(unit, keys) for unit, keys in units.items()}
    return UnitMap(targets, _object(document, "unit_gains"), _object(document, "region_gains"),
                   _text(document, "name"), _text(document, "source"))


def _object(document: dict, name: str) -> dict:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise UnitMapError(f"{name} must be a JSON object (name: value), not {type(value).__name__}")
    return value


def _text(document: dict, name: str) -> str:
    value = document.get(name, "")
    if not isinstance(value, str):
        raise UnitMapError(f"{name} must be a string")
    return value


def _key_list(unit: str, keys: object) -> tuple[str, ...]:
    """A unit's keys as a file gives them: one name, or a list of names."""
    if isinstance(keys, str):
        return (keys,)
    if isinstance(keys, list):
        return tuple(keys)
    raise UnitMapError(f"units: {unit} must be a shape key name or a list of them")


def _check_unit(unit: str, where: str) -> None:
    if unit in _REGION_OF:
        return
    meant = [known for known in ARKIT_UNITS if normalised_unit_name(known) == normalised_unit_name(str(unit))]
    meant = meant or difflib.get_close_matches(str(unit), ARKIT_UNITS, n=1)
    hint = f" (did you mean {meant[0]}?)" if meant else " (the 52 ARKit names: eyeBlinkLeft, jawOpen, ...)"
    raise UnitMapError(f"{where}: '{unit}' is not an ARKit unit{hint}")


def _check_keys(unit: str, keys: tuple[str, ...]) -> None:
    if not keys:
        raise UnitMapError(f"units: {unit} names no shape key (leave the unit out to not play it)")
    for key in keys:
        if not isinstance(key, str) or not key.strip():
            raise UnitMapError(f"units: {unit} has {key!r}, not a shape key name")
    if len(set(keys)) != len(keys):
        raise UnitMapError(f"units: {unit} names a shape key twice")


def _check_gain(gain: object, where: str, lowest: float) -> None:
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain):
        raise UnitMapError(f"{where}: the gain must be a number, not {gain!r}")
    if not lowest <= gain <= MAX_GAIN:
        raise UnitMapError(f"{where}: gain {gain} is outside {lowest:g} to {MAX_GAIN:g}")
