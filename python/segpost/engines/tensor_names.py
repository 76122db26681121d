"""Engines that name the contract's tensors otherwise: the ``tensor_names`` map (contract name ->
the engine's name), applied at the engine boundary so that everything above speaks contract
names, and the map ``segpost inspect`` works out from two engines' tensors.

The pipeline config holds one map for the pair ({"presence_logits": "presence", ...}); each
engine gets the entries of the tensors it has in the contract (the FPN tensors: both).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .base import EngineError, TensorSpec, TensorTable
from .contract import (CONTRACT_TENSORS, DECODER_INPUTS, DECODER_OUTPUTS, DECODER_TENSORS, FPN_TENSORS, OPTIONAL,
                       VISION_INPUTS, VISION_TENSORS, Geometry, check_engines)

TensorNames = Mapping[str, str]
# Ranks of the contract's tensors: a tensor of another rank is never guessed to be one.
RANKS = {"images": 4, **{n: 4 for n in FPN_TENSORS}, "prompt_features": 3, "prompt_mask": 2, "pred_masks": 4,
         "pred_boxes": 3, "pred_logits": 2, "presence_logits": 2}
MAX_GUESSES = 20000


def rename_tensors(engine: str, specs: Mapping[str, TensorSpec], tensor_names: Optional[TensorNames]
                   ) -> Dict[str, TensorSpec]:
    """`specs` (by the engine's names) by contract name: the tensors `tensor_names` maps get their
    contract name (keeping the engine's in engine_name), the others keep their own. EngineError,
    naming `engine` and the tensor, for an entry that is no contract tensor or no tensor of it."""
    names = dict(tensor_names or {})
    inverse: Dict[str, str] = {}
    for contract, own in names.items():
        if contract not in CONTRACT_TENSORS:
            raise EngineError(f"{engine}: tensor_names maps {contract!r}, which is not a tensor of the contract "
                              f"({', '.join(CONTRACT_TENSORS)})")
        if own not in specs:
            raise EngineError(f"{engine}: tensor_names maps {contract} to {own!r}, but the engine has no tensor "
                              f"{own!r}; it has {', '.join(specs)}")
        if own in inverse:
            raise EngineError(f"{engine}: tensor_names maps both {inverse[own]} and {contract} to {own!r}")
        inverse[own] = contract
    for own in specs:
        if own not in inverse and own in names:
            raise EngineError(f"{engine}: tensor_names maps {own} to {names[own]!r}, but the engine has a tensor "
                              f"named {own!r} too: map that one to its contract name as well")
    return {inverse.get(own, own): replace(spec, name=inverse.get(own, own), engine_name="" if own not in inverse
                                           or inverse[own] == own else own) for own, spec in specs.items()}


def split_tensor_names(tensor_names: Any, where: str = "config") -> Tuple[Dict[str, str], Dict[str, str]]:
    """A pair's map -> (the vision encoder's entries, the decoder's). An entry that names no
    contract tensor goes to both, whose adapters refuse it naming their file."""
    if tensor_names is None:
        return {}, {}
    if not isinstance(tensor_names, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in tensor_names.items()):
        raise ValueError(f"{where}: tensor_names must map contract tensor names to the engine's names, e.g. "
                         f'{{"presence_logits": "presence"}}; got {tensor_names!r}')
    unknown = lambda name: name not in CONTRACT_TENSORS  # noqa: E731
    return ({k: v for k, v in tensor_names.items() if k in VISION_TENSORS or unknown(k)},
            {k: v for k, v in tensor_names.items() if k in DECODER_TENSORS or unknown(k)})


@dataclass(frozen=True)
class Tensors:
    """An engine file's declared tensors (by its own names), as the contract check reads them."""

    name: str
    tensors: Mapping[str, TensorSpec]
    device: str = "any"

    def renamed(self, mapping: TensorNames, roles: Tuple[str, ...]) -> "Tensors":
        """By contract name, through `mapping`'s entries for `roles` (those that rename)."""
        entries = {r: mapping[r] for r in roles if mapping.get(r, r) != r}
        return Tensors(self.name, rename_tensors(self.name, self.tensors, entries))


@dataclass(frozen=True)
class Match:
    """What ``match_engines`` found. ``tensor_names``: the entries that differ from the contract's
    names (the map to paste) when the pair fits; ``roles``: per engine ("vision encoder",
    "decoder"), each of its tensors' contract role ("a or b" when the shapes cannot tell)."""

    fits: bool
    message: str
    tensor_names: Dict[str, str] = field(default_factory=dict)
    roles: Dict[str, Dict[str, str]] = field(default_factory=dict)
    geometry: Optional[Geometry] = None


def _fixed(table: TensorTable, is_input: bool, roles: Tuple[str, ...], given: TensorNames) -> Dict[str, str]:
    """role -> tensor settled before guessing: the given map's entries, then tensors that carry the
    contract name itself."""
    fixed = {r: given[r] for r in roles if r in given}
    for role in roles:
        spec = table.tensors.get(role)
        if role not in fixed and spec is not None and spec.is_input == is_input and role not in given.values():
            fixed[role] = role
    return fixed


def _fillings(table: TensorTable, is_input: bool, roles: Tuple[str, ...], fixed: Dict[str, str]) -> List[Dict[str, str]]:
    """Every way to give the direction's other tensors distinct other roles of their rank that
    leaves no tensor without a role and no required role without a tensor."""
    free_roles = [r for r in roles if r not in fixed]
    free = [s for s in table.tensors.values() if s.is_input == is_input and s.name not in fixed.values()]
    fillings = []
    for chosen in itertools.permutations(free_roles, len(free)):
        if all(RANKS[r] == len(s.shape) for r, s in zip(chosen, free)) and \
                all(r in chosen or r in OPTIONAL for r in free_roles):
            fillings.append({**fixed, **{r: s.name for r, s in zip(chosen, free)}})
    return fillings


def _candidates(vision: TensorTable, decoder: TensorTable, given: TensorNames) -> List[Dict[str, str]]:
    """Whole maps (role -> tensor) consistent with names, ranks and the FPN tensors shared by name."""
    images = _fillings(vision, True, VISION_INPUTS, _fixed(vision, True, VISION_INPUTS, given))
    levels = _fillings(vision, False, FPN_TENSORS, _fixed(vision, False, FPN_TENSORS, given))
    outputs = _fillings(decoder, False, DECODER_OUTPUTS, _fixed(decoder, False, DECODER_OUTPUTS, given))
    prompt_roles = tuple(r for r in DECODER_INPUTS if r not in FPN_TENSORS)
    prompts = {}
    for fpn in levels:   # the decoder's FPN inputs carry the encoder's output names: one map serves both
        key = tuple(fpn[r] for r in FPN_TENSORS)
        if key not in prompts:
            fixed = {**_fixed(decoder, True, prompt_roles, given), **{r: fpn[r] for r in FPN_TENSORS}}
            prompts[key] = _fillings(decoder, True, DECODER_INPUTS, fixed) if len(set(fixed.values())) == len(fixed) else []
    if len(images) * sum(len(p) for p in prompts.values()) * len(outputs) > MAX_GUESSES:
        raise EngineError(f"too many tensors whose names say nothing ({MAX_GUESSES}+ ways to match them): "
                          "give the map with tensor_names")
    return [{**i, **d, **o} for i in images for fpn in levels for d in prompts[tuple(fpn[r] for r in FPN_TENSORS)]
            for o in outputs]


def _check(vision: Tensors, decoder: Tensors, mapping: TensorNames) -> Geometry:
    return check_engines(vision.renamed(mapping, VISION_TENSORS), decoder.renamed(mapping, DECODER_TENSORS))


def _roles(vision: Tensors, decoder: Tensors, maps: List[Dict[str, str]]) -> Dict[str, Dict[str, str]]:
    roles = {}
    for title, table, own in (("vision encoder", vision, VISION_TENSORS), ("decoder", decoder, DECODER_TENSORS)):
        options: Dict[str, List[str]] = {name: [] for name in table.tensors}
        for mapping in maps:
            for role in own:
                if mapping.get(role) in options and role not in options[mapping[role]]:
                    options[mapping[role]].append(role)
        roles[title] = {name: " or ".join(sorted(found, key=CONTRACT_TENSORS.index)) if found else "?"
                        for name, found in options.items()}
    return roles


def match_engines(vision: Tensors, decoder: Tensors, given: Optional[TensorNames] = None) -> Match:
    """Which of the two engines' tensors plays which contract role: names first (the given map's
    entries, then tensors named as in the contract), then the only assignment of the others by
    rank that passes the contract check. Two assignments that both pass (fpn_feat_2 and
    fpn_pos_2 have one shape) are never guessed between: the Match says which tensors to name."""
    given = dict(given or {})
    try:
        candidates = _candidates(vision, decoder, given)
    except EngineError as exc:
        return Match(False, str(exc))
    passing, failures = [], []
    for mapping in candidates:
        try:
            passing.append((mapping, _check(vision, decoder, mapping)))
        except EngineError as exc:
            failures.append(str(exc))
    if len(passing) == 1:
        mapping, geometry = passing[0]
        return Match(True, "fits the contract", {r: n for r, n in mapping.items() if r != n},
                     _roles(vision, decoder, [mapping]), geometry)
    if passing:
        maps = [m for m, _ in passing]
        open_roles = [r for r in CONTRACT_TENSORS if len({m.get(r) for m in maps}) > 1]
        tensors = sorted({m[r] for m in maps for r in open_roles if r in m})
        return Match(False, f"the shapes cannot tell which of {', '.join(tensors)} is {' / '.join(open_roles)} "
                            "(the contract fits either way and their names do not say): name them in tensor_names (segpost "
                            f"inspect --tensor-names '{{\"{open_roles[0]}\": ...}}' checks a map)",
                     roles=_roles(vision, decoder, maps))
    settled = {**_fixed(vision, True, VISION_INPUTS, given), **_fixed(vision, False, FPN_TENSORS, given),
               **_fixed(decoder, True, DECODER_INPUTS, given), **_fixed(decoder, False, DECODER_OUTPUTS, given)}
    if failures:
        message = failures[0]
    else:   # no assignment by rank: the contract check on the names alone says what is missing or extra
        try:
            _check(vision, decoder, settled)
            message = "no assignment of the tensors fits the contract"
        except EngineError as exc:
            message = str(exc)
    return Match(False, message, roles=_roles(vision, decoder, [settled]))
