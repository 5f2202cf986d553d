"""Exercises for lesson 04 (warm start). ``from lesson_utils.exercises import lesson04 as ex``."""

from itertools import product

import numpy as np
import torch

from lesson_utils.exercises.core import (
    Incorrect,
    Question,
    choice,
    host_values,
    require_module,
    require_same_tensors,
    same_values,
    seed0_net_state,
    state_of,
)
from lesson_utils.i18n import N_, _
from lesson_utils.models import Net


def _setup_source_state() -> dict:
    """The set-up cell's `source_state`: after seed 0, a Net for `ddp_state`, then the 10-class source.

    Built again here (on the CPU, the notebook's random numbers untouched), so the answer is
    judged against the set-up's weights even after `del source_state`.
    """
    with torch.random.fork_rng(devices=[]):  # on the CPU: checkers run under torch_as_installed
        torch.manual_seed(0)
        Net()  # ddp_state's
        return Net().state_dict()


# A fresh bias entry, uniform in +-1/sqrt(84), lies this close to one of the 10 old ones with a chance of about 2.8%;
# all 4 entries, with a chance below one in a million
NEAR = 3e-4


def _centred_rows(rows: np.ndarray) -> np.ndarray:
    return rows - rows.mean(axis=1, keepdims=True)


def _fresh_head(state: dict, source: dict) -> None:
    """:class:`Incorrect` unless the 4-class head is new: independent of the source's 10-class head,
    and spread like nn.Linear(84, 4)'s own initialisation.

    Independent means none of these holds (each is a way for a head to carry the old one): it
    shares values with the old head (rows copied, shuffled or rearranged); a weight row lies
    mostly in the span of the old rows (a combination, a scaling, a mean; a fresh row has about
    12% of its length there); a weight row is a function of an old row, entry by entry (tanh,
    abs, sin, a sign...: sorted by the old row, its values change smoothly, which the von Neumann
    ratio of successive differences measures: about 2 when independent, below 0.6 here); the bias
    is an affine function of old bias entries (a*old + b, to float rounding), or each of its entries lies
    within :data:`NEAR` of an old one. A fresh head fails one of these with a chance below one in a million.
    """
    why = _(
        "The 4 new classes are not the old ones, so the head must stay new (Net(num_classes=4)'s own initialisation)"
    )
    weight, bias, old_weight, old_bias = (
        host_values(tensors[name]).astype(np.float64)
        for tensors in (state, source)
        for name in ("fc3.weight", "fc3.bias")
    )
    rows = [(i, j) for i, row in enumerate(weight) for j, old in enumerate(old_weight) if np.array_equal(row, old)]
    if rows:
        message = _("rows {rows} of fc3.weight are rows {source_rows} of the source's 10-class head. {why}")
        raise Incorrect(message.format(rows=[i for i, _j in rows], source_rows=[j for _i, j in rows], why=why))
    entries = [(i, int(np.flatnonzero(old_bias == value)[0])) for i, value in enumerate(bias) if value in old_bias]
    if entries:
        message = _("fc3.bias takes entries {rows} from the source's 10-class bias (its entries {source_rows}). {why}")
        raise Incorrect(message.format(rows=[i for i, _j in entries], source_rows=[j for _i, j in entries], why=why))
    nearest = np.abs(bias[:, None] - old_bias[None, :]).argmin(axis=1)
    if np.all(np.abs(bias - old_bias[nearest]) < NEAR):
        message = _(
            "every entry of fc3.bias lies within {near} of an entry of the source's 10-class bias (its entries "
            "{source_rows}): copied, then changed a little? {why}"
        )
        raise Incorrect(message.format(near=NEAR, source_rows=nearest.tolist(), why=why))
    shared = int(np.isin(weight, old_weight).sum())
    if shared >= 4:  # a fresh head shares none (its values are drawn anew)
        message = _(
            "fc3.weight shares {count} values with the source's 10-class head (copied, then shuffled or "
            "rearranged?). {why}"
        )
        raise Incorrect(message.format(count=shared, why=why))
    centred, old_centred = _centred_rows(weight), _centred_rows(old_weight)
    basis = np.linalg.qr(old_centred.T)[0]  # the span of the old rows (after removing each row's mean)
    lengths = (centred**2).sum(axis=1)
    inside = np.divide(((centred @ basis) ** 2).sum(axis=1), lengths, out=np.zeros_like(lengths), where=lengths > 0)
    if inside.max() > 0.6 or inside.mean() > 0.3:
        message = _(
            "row {row} of fc3.weight was computed from the source's head: {percent:.0f}% of it lies in the span of "
            "the old rows (a combination, scaling or mean of them: 100%; a fresh row: about 12%). {why}"
        )
        raise Incorrect(message.format(row=int(inside.argmax()), percent=100 * inside.max(), why=why))
    by_old = weight[:, np.argsort(old_weight, axis=1)]  # [new row, old row, entry]: new values in each old row's order
    steps = (np.diff(by_old, axis=2) ** 2).sum(axis=2)
    spread = ((by_old - by_old.mean(axis=2, keepdims=True)) ** 2).sum(axis=2)
    smooth = np.divide(steps, spread, out=np.full_like(steps, 2.0), where=spread > 0)  # about 2 when independent
    if smooth.min() < 0.6:
        row, source_row = np.unravel_index(smooth.argmin(), smooth.shape)
        message = _(
            "row {row} of fc3.weight was computed from row {source_row} of the source's head, entry by entry: sorted "
            "by that row's values, its own change smoothly (a fresh row's jump about at random). {why}"
        )
        raise Incorrect(message.format(row=int(row), source_row=int(source_row), why=why))
    picks = np.array(list(product(range(len(old_bias)), repeat=len(bias))))
    olds = _centred_rows(old_bias[picks])
    new = bias - bias.mean()
    spread = (olds**2).sum(axis=1)
    if np.linalg.norm(new) > 0:
        scale = np.divide(olds @ new, spread, out=np.zeros_like(spread), where=spread > 0)
        misfit = np.linalg.norm(new - scale[:, None] * olds, axis=1) / np.linalg.norm(new)
        fits = np.flatnonzero((misfit < 1e-5) & (scale != 0))
        if len(fits):
            message = _(
                "fc3.bias was computed from the source's bias: it is a*old + b of its entries {source_rows}. {why}"
            )
            raise Incorrect(message.format(source_rows=picks[fits[0]].tolist(), why=why))
    bound = 1 / 84**0.5  # nn.Linear(84, 4) draws weight and bias uniformly from (-bound, bound)
    for name, head in (("fc3.weight", weight), ("fc3.bias", bias)):
        if head.size > 1 and np.all(head == head.flat[0]):
            message = _(
                "every value of {name} is {value}: a filled head, not a freshly initialised one. Keep the head "
                "Net(num_classes=4) built (its values spread within +-{bound:.3f}), do not fill or train it"
            )
            raise Incorrect(message.format(name=name, value=f"{head.flat[0]:.7g}", bound=bound))
        if np.abs(head).max() > bound:
            message = _(
                "{name} holds values up to {largest:.3f} in size, but nn.Linear(84, 4)'s own initialisation keeps "
                "them within +-{bound:.3f}: keep the head Net(num_classes=4) built (do not fill it, draw it "
                "another way or train it)"
            )
            raise Incorrect(message.format(name=name, largest=float(np.abs(head).max()), bound=bound))


def _warm_started(target: object) -> str:
    require_module(target, "target")
    source_state = _setup_source_state()
    with torch.random.fork_rng(devices=[]):  # names and shapes: the notebook's random numbers untouched
        expected = Net(num_classes=4).state_dict()
    state = state_of(target)
    if state.keys() != expected.keys():
        require_same_tensors(state, expected, _("a Net(num_classes=4)'s state_dict"), what="`target`")
    if state["fc3.weight"].shape != expected["fc3.weight"].shape:
        shape = list(state["fc3.weight"].shape)
        raise Incorrect(
            _("`target` must have a 4-class head: fc3.weight has shape {shape}, not [4, 84]").format(shape=shape)
        )
    meta = [k for k, v in state.items() if v.is_meta]
    if meta:
        message = _("{key} of `target` is on the meta device (no data): build target normally, on the CPU")
        raise Incorrect(message.format(key=meta[0]))
    fitting = {k: v for k, v in source_state.items() if k in state and v.shape == state[k].shape}
    copied = [k for k, v in fitting.items() if same_values(state[k], v, state[k].dtype)]
    if not copied:
        raise Incorrect(_("no layer of `target` holds the source's weights: load the tensors whose shapes fit"))
    missed = [k for k in fitting if k not in copied]
    if missed:
        message = _("these fit but were not transferred: {keys}; load every tensor whose name and shape match")
        raise Incorrect(message.format(keys=missed))
    require_same_tensors(
        {k: state[k] for k in fitting}, fitting, "source_state", _("load the tensors as they are"), what="`target`"
    )
    _fresh_head(state, source_state)
    return _("{count} tensors transferred, the 4-class head new").format(count=len(copied))


q1 = Question(
    "lesson04.q1",
    "Build `target`, a Net with 4 classes, and warm start it from `source_state` (a 10-class Net's state_dict): "
    "transfer every tensor that fits, keep the new head.",
    _warm_started,
    names=["target"],
    hint=N_("strict=False alone raises on fc3's size mismatch: filter by shape first (or use load_matching_weights)."),
)

q2 = choice(
    "lesson04.q2",
    "What does load_state_dict(..., strict=False) NOT ignore?",
    {
        "a": N_("keys the model has and the file lacks"),
        "b": N_("keys the file has and the model lacks"),
        "c": N_("a key on both sides with different shapes"),
    },
    "c",
    {
        "a": N_("those are the missing_keys it returns instead of raising"),
        "b": N_("those are the unexpected_keys it returns instead of raising"),
    },
    hint=N_("Lesson 04, section 3: which cell still raised with strict=False?"),
)


def _prefix_stripped(clean_state: object, ddp_state: object) -> str:
    expected = seed0_net_state()  # the set-up's ddp_state, 'module.' stripped: judged even after `del ddp_state`
    if isinstance(clean_state, dict) and any(str(k).startswith("module.") for k in clean_state):
        raise Incorrect(_("keys still start with 'module.': strip it (consume_prefix_in_state_dict_if_present)"))
    require_same_tensors(
        clean_state,
        expected,
        _("`ddp_state` with 'module.' stripped"),
        _("only rename the keys, do not touch the values"),
        what="`clean_state`",
    )
    if clean_state is ddp_state:  # the question asks for clean_state only: right, and worth knowing
        return _(
            "a plain Net can load it now. `ddp_state` itself was renamed in place: it is the same dict as "
            "`clean_state` now (copy it first, dict(ddp_state), whenever you still need the original)"
        )
    return _("a plain Net can load it now")


q3 = Question(
    "lesson04.q3",
    "`ddp_state` was saved from a DataParallel/DDP-wrapped Net. Make `clean_state`, the same tensors with the "
    "keys a plain Net expects.",
    _prefix_stripped,
    names=["clean_state"],
    optional=["ddp_state"],
    hint=N_(
        "torch.nn.modules.utils.consume_prefix_in_state_dict_if_present renames the keys of the dict you pass, in "
        "place, and returns None: call it on its own line (on a copy, if you want to keep ddp_state as it is)."
    ),
    none_message=N_(
        "If you wrote `clean_state = consume_prefix_in_state_dict_if_present(...)`: that function edits the dict "
        "you pass in place and returns None. Copy first (clean_state = dict(ddp_state)), then call it on "
        "clean_state without assigning its result"
    ),
)
