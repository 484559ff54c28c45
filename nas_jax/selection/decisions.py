"""Decision rules on score tables (SPEC 7.3, 7.4, 7.10): pure functions of numbers.

Scores are what `scoring.Scorer` returns for each candidate: the supernet's accuracy
(percent) and loss with that candidate removed. A candidate whose removal hurts most
is the one the supernet relies on most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CRITERIA = ("acc", "loss")
TOPOLOGIES = ("iterative", "one_shot")


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown criterion {criterion!r}; accepted: {', '.join(CRITERIA)}")


def choose_op(acc_K: Sequence[float], loss_K: Sequence[float], criterion: str = "acc") -> int:
    """SPEC 7.3: the op whose removal gives the lowest accuracy ('acc') or the highest
    loss ('loss'); strict comparisons, so ties keep the first op."""
    _check_criterion(criterion)
    if criterion == "acc":
        return int(np.argmin(np.asarray(acc_K)))  # argmin/argmax return the first extremum
    return int(np.argmax(np.asarray(loss_K)))


def edge_to_delete(acc_V: Sequence[float], loss_V: Sequence[float], criterion: str = "acc") -> int:
    """Position of the edge whose removal hurts least: highest accuracy ('acc') or lowest
    loss ('loss'). The reference compares with `>=` / `<=`: ties delete the later edge."""
    _check_criterion(criterion)
    crit = np.asarray(acc_V if criterion == "acc" else loss_V, np.float64)
    best = 0
    for i in range(1, len(crit)):
        if (crit[i] >= crit[best]) if criterion == "acc" else (crit[i] <= crit[best]):
            best = i
    return best


def eliminate_edges(
    score: Callable[[tuple[int, ...]], tuple[Sequence[float], Sequence[float]]],
    eids: Sequence[int],
    criterion: str = "acc",
) -> tuple[tuple[int, int], list[dict]]:
    """The reference's topology rule (SPEC 7.4): while more than two inputs remain,
    score each survivor's removal alone, delete the least useful one, re-score.

    `score(survivors) -> (acc_V, loss_V)`. Returns the kept pair (in edge-id order)
    and one record per round: candidates, acc, loss, removed.
    """
    survivors, rounds = list(eids), []
    while len(survivors) > 2:
        acc, loss = score(tuple(survivors))
        i = edge_to_delete(acc, loss, criterion)
        rounds.append(
            {
                "candidates": list(survivors),
                "acc": [float(a) for a in acc],
                "loss": [float(v) for v in loss],
                "removed": survivors[i],
            }
        )
        survivors.pop(i)
    return (survivors[0], survivors[1]), rounds


def keep_two_one_shot(
    eids: Sequence[int], acc_V: Sequence[float], loss_V: Sequence[float], criterion: str = "acc"
) -> tuple[int, int]:
    """The paper's rule (A.3): keep the two edges with the lowest accuracy when removed
    (or highest loss), from one round of scores; ties keep the lower edge id."""
    _check_criterion(criterion)
    key = np.asarray(acc_V, np.float64) if criterion == "acc" else -np.asarray(loss_V, np.float64)
    top = np.argsort(key, kind="stable")[:2]
    a, b = sorted(int(eids[i]) for i in top)
    return a, b


def magnitude_op(weights_K: Sequence[float], op_names: Sequence[str], *, skip_none: bool) -> int:
    """PT-Mag's op (SPEC 7.10): the largest softmax(alpha) entry; with `skip_none` (the
    DARTS family, as its read-out does, SPEC 7.9) never `none`. Ties keep the earliest
    column."""
    w = np.asarray(weights_K, np.float64)
    usable = [k for k, name in enumerate(op_names) if not (skip_none and name == "none")]
    return max(usable, key=lambda k: (w[k], -k))


def magnitude_edges(
    eids: Sequence[int], weights_VxK: np.ndarray, edge_ops: Sequence[Sequence[str]]
) -> tuple[int, int]:
    """PT-Mag's topology: the two edges with the largest non-`none` softmax(alpha)
    entry (the DARTS rule of SPEC 7.9 on the raw alphas); ties keep the lower id."""
    strength = [
        max(float(w[k]) for k, name in enumerate(ops) if name != "none")
        for w, ops in zip(np.asarray(weights_VxK), edge_ops)
    ]
    top = np.argsort(-np.asarray(strength), kind="stable")[:2]
    a, b = sorted(int(eids[i]) for i in top)
    return a, b
