"""The select stage (SPEC 7): PT, PT-Mag or magnitude on a searched supernet.

genotype = run_select(config, workdir, search_state, setup, search_data)

Writes to `workdir`: decisions.jsonl (one line per decision, every candidate's
scores), select_metrics.jsonl (+ TensorBoard) for the tuning epochs, one orbax
checkpoint per decision event in checkpoints_select/, genotype.json (the selected
cell), genotype_magnitude.json (the DARTS read-out of the same searched supernet),
cells.dot and, when a renderer is installed, cells.png. Rerunning resumes after the
last finished event and ends with the genotype of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nas_jax import arch, config_lib, genotype, spaces
from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress, logger
from nas_jax.selection import decisions, draw, schedule, scoring, tuning

METHODS = ("pt", "pt_mag", "magnitude")
_KEY_TAG = 0x5E1EC7  # separates the selection's random streams from the search's


def default_config() -> ml_collections.ConfigDict:
    """Defaults of `config.select` (the reference's PT, SPEC 7, 15)."""
    return ml_collections.ConfigDict(
        dict(
            method="pt",  # 'pt', 'pt_mag' (magnitude op choice + tuning), 'magnitude' (DARTS)
            criterion="acc",  # op decision: 'acc' (argmin acc when removed) or 'loss'
            edge_criterion="acc",  # topology decision, same choices
            topology="iterative",  # the reference's elimination; 'one_shot' = the paper's
            edge_order="random",  # 'random' (from the seed), 'fixed', 'reverse'
            tune_epochs=5,  # the reference's proj_intv; 0 = no tuning
            tune_lr_factor=0.1,  # tuning lr = search.lr * factor
            tune_schedule="constant",  # the reference (its cosine is never stepped); 'cosine'
            eval_batches=0,  # batches per scoring pass; 0 = the whole valid half
            score_chunk=0,  # variants scored at once; 0 = all (vmap)
            write_back_stats=False,  # True = scoring updates BN running stats (reference)
            log_accuracy=True,  # log the supernet's accuracy before/after every decision
        )
    )


def validate_config(config) -> None:
    """Raises config_lib.ConfigError naming the bad value and the accepted ones."""
    sel, chk = config.select, config_lib.check_choice
    chk("select.method", sel.method, METHODS)
    chk("select.criterion", sel.criterion, decisions.CRITERIA)
    chk("select.edge_criterion", sel.edge_criterion, decisions.CRITERIA)
    chk("select.topology", sel.topology, decisions.TOPOLOGIES)
    chk("select.edge_order", sel.edge_order, schedule.EDGE_ORDERS)
    chk("select.tune_schedule", sel.tune_schedule, tuning.SCHEDULES)
    for name in ("tune_epochs", "eval_batches", "score_chunk"):
        value = sel[name]
        if not isinstance(value, int):
            raise config_lib.ConfigError(f"select.{name}={value!r} must be an integer >= 0")
        config_lib.check_positive(f"select.{name}", value, allow_zero=True)
    config_lib.check_positive("select.tune_lr_factor", sel.tune_lr_factor)
    if config.model.space == "nb201" and sel.tune_epochs == 1:
        raise config_lib.ConfigError(
            "select.tune_epochs=1 leaves NB201's schedule with 5 decision epochs for 6 edges"
        )


class SelectKeys(NamedTuple):
    order: jax.Array
    score: jax.Array
    tune: tuning.TuneKeys

    @classmethod
    def from_seed(cls, seed: int) -> SelectKeys:
        k = jax.random.split(jax.random.fold_in(jax.random.key(seed), _KEY_TAG), 5)
        return cls(k[0], k[1], tuning.TuneKeys(*k[2:]))


class SelectResult(NamedTuple):
    genotype: genotype.AnyGenotype
    magnitude_genotype: genotype.AnyGenotype
    state: Any  # the final SearchState
    records: list[dict]  # decisions.jsonl
    trace_counts: dict  # (kind, cell_type) -> traces of each jitted function


def run_select(config, workdir: str, search_state, setup, search_data) -> genotype.AnyGenotype:
    """The select stage after `loop.run_search`; returns the selected genotype."""
    return select(config, workdir, search_state, setup, search_data).genotype


def _to_numpy(weights) -> dict:
    return {t: np.asarray(w) for t, w in weights.items()}


class _Selector:
    """Makes the decisions of one event with the configured method."""

    def __init__(self, config, setup, search_data, keys: SelectKeys):
        self.sel, self.space, self.keys = config.select, setup.space, keys
        self.split = (search_data.valid_x, search_data.valid_y)
        s = config.search
        self.uniform = s.method == "fixed_alpha" and s.fixed_uniform
        protocol = scoring.DataProtocol.from_config(config.data, search_data.mean, search_data.std)
        n_valid = int(search_data.valid_y.shape[0])
        self.num_batches = protocol.num_batches(n_valid, self.sel.eval_batches)
        inputs = [len(self.space.node_edges[n]) for n in self.space.prunable_nodes]
        self.scorer = scoring.Scorer(
            setup.model, protocol, max_edges=max(inputs, default=1),
            chunk=self.sel.score_chunk, write_back=self.sel.write_back_stats,
        )  # fmt: skip

    def weights(self, a: arch.ArchState):
        if self.uniform:  # fixed_alpha with exactly uniform weights (search.fixed_uniform)
            zeros = jax.tree.map(jnp.zeros_like, a.alphas)
            return arch.weights_from_alphas(zeros, a.decided_op, a.edge_kept)
        return arch.mixing_weights(a)

    @staticmethod
    def _variables(state) -> dict:
        return {"params": state.params, "batch_stats": state.batch_stats}

    def decide(self, state, event: schedule.Event, j: int, d: schedule.Decision):
        """Applies one decision; returns (state, record). Pass r of the decision reads
        the batches of key fold_in(fold_in(fold_in(score, event), j), r)."""
        key = jax.random.fold_in(jax.random.fold_in(self.keys.score, event.index), j)
        t = d.cell_type
        record = {"event": event.index, "epoch": event.epoch, "cell_type": t, "kind": d.kind}
        before = state.arch
        if d.kind == "op":
            state, rec = self._decide_op(state, key, t, d.target)
        else:
            state, rec = self._decide_node(state, key, t, d.target)
        record.update(rec)
        if self.sel.log_accuracy:  # on the batches of the first scoring pass
            for when, a in (("before", before), ("after", state.arch)):
                acc, loss = self.scorer.evaluate(
                    self._variables(state), self.weights(a), self.split,
                    jax.random.fold_in(key, 0), self.num_batches,
                )  # fmt: skip
                record[f"valid_acc_{when}"], record[f"valid_loss_{when}"] = acc, loss
        return state, record

    def _decide_op(self, state, key, t, edge):
        if int(state.arch.decided_op[t][edge]) >= 0:
            raise RuntimeError(f"Edge {edge} of {t} is already decided: checkpoint/plan mismatch")
        names = self.space.edge_ops(t, edge)
        rec = {"edge": int(edge), "candidates": list(names)}
        if self.sel.method == "pt":
            s = self.scorer.score_ops(
                self._variables(state), self.weights(state.arch), t, edge, self.split,
                jax.random.fold_in(key, 0), self.num_batches,
            )  # fmt: skip
            op = decisions.choose_op(s.acc, s.loss, self.sel.criterion)
            rec.update(acc=s.acc.tolist(), loss=s.loss.tolist())
            state = state._replace(batch_stats=s.batch_stats)
        else:  # pt_mag
            w = np.asarray(jax.nn.softmax(state.arch.alphas[t][edge]))
            op = decisions.magnitude_op(w, names, self.space.family)
            rec["softmax_alpha"] = w.tolist()
        rec.update(choice=names[op], choice_index=op)
        return state._replace(arch=arch.decide_op(state.arch, t, edge, op)), rec

    def _decide_node(self, state, key, t, node):
        if node not in arch.undecided_nodes(state.arch, self.space, t):
            raise RuntimeError(f"Node {node} of {t} is already decided: checkpoint/plan mismatch")
        eids = self.space.node_edges[node]
        rec: dict = {"node": int(node), "candidates": list(eids)}
        if self.sel.method == "pt":
            passes = 0

            def score(survivors):  # one pass per round, fresh batches each
                nonlocal state, passes
                s = self.scorer.score_edges(
                    self._variables(state), self.weights(state.arch), t, survivors,
                    self.split, jax.random.fold_in(key, passes), self.num_batches,
                )  # fmt: skip
                state, passes = state._replace(batch_stats=s.batch_stats), passes + 1
                return s.acc, s.loss

            crit = self.sel.edge_criterion
            if self.sel.topology == "iterative":
                kept, rounds = decisions.eliminate_edges(score, eids, crit)
            else:
                acc, loss = score(tuple(eids))
                kept = decisions.keep_two_one_shot(eids, acc, loss, crit)
                rounds = [{"candidates": list(eids), "acc": acc.tolist(), "loss": loss.tolist()}]
            rec.update(acc=rounds[0]["acc"], loss=rounds[0]["loss"], rounds=rounds)
        else:  # pt_mag
            w = np.asarray(jax.nn.softmax(state.arch.alphas[t], axis=-1))[list(eids)]
            kept = decisions.magnitude_edges(eids, w, [self.space.edge_ops(t, e) for e in eids])
            rec["softmax_alpha"] = w.tolist()
        rec["choice"] = list(kept)
        return state._replace(arch=arch.prune_node(state.arch, self.space, t, node, kept)), rec


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _warn_none_kept(space, a: arch.ArchState) -> None:
    """SPEC 7.9 pitfall: the DARTS read-out reports a kept `none` edge as another op."""
    for t in space.cell_types if space.family == "darts" else ():
        for e in range(space.num_edges):
            op = int(a.decided_op[t][e])
            if bool(a.edge_kept[t][e]) and op >= 0 and space.edge_ops(t, e)[op] == "none":
                logger.warning(
                    "Kept edge %d of %s was decided 'none'; the genotype shows "
                    "another op there (SPEC 7.9)",
                    e,
                    t,
                )


def select(config, workdir: str, search_state, setup, search_data) -> SelectResult:
    """`run_select` with everything a test or a notebook wants to look at."""
    sel, space = config.select, setup.space
    os.makedirs(workdir, exist_ok=True)
    magnitude = genotype.derive_genotype(space, _to_numpy(arch.mixing_weights(search_state.arch)))
    genotype.save_json(
        magnitude,
        os.path.join(workdir, "genotype_magnitude.json"),
        method="magnitude",
        space=space.name,
        stage="select",
    )
    if sel.method == "magnitude":
        _finish(workdir, space, magnitude, magnitude, sel.method)
        return SelectResult(magnitude, magnitude, search_state, [], {})

    keys = SelectKeys.from_seed(config.seed)
    plan = schedule.make_plan(space, keys.order, interval=sel.tune_epochs, order=sel.edge_order)
    total_epochs = schedule.tuning_epochs(len(plan), sel.tune_epochs, space.family)
    spe = setup.steps_per_epoch
    tx, lr_schedule = tuning.tune_optimizer(config, spe, total_epochs)
    state = jax.tree.map(jnp.copy, search_state)  # tuning donates its input, not the caller's
    state = tuning.fresh_weight_optimizer(state, tx)
    start_step, start_event = int(state.step), 0
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints_select"), max_to_keep=None)
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        start_event, start_step = meta["event"] + 1, meta["start_step"]
        logger.info("Resumed selection after event %d of %d", meta["event"] + 1, len(plan))
    decision_log = MetricsWriter(workdir, "decisions", tensorboard=False)
    tune_log = MetricsWriter(workdir, "select_metrics")
    for writer in (decision_log, tune_log):
        writer.truncate_after("event", start_event)

    selector = _Selector(config, setup, search_data, keys)
    trace_counts = selector.scorer.trace_counts
    raw_step = tuning.make_tune_step(
        setup, config, tx, lr_schedule, search_data.mean, search_data.std, start_step
    )

    def counted_step(*args):
        trace_counts[("tune", None)] += 1
        return raw_step(*args)

    tune_step = jax.jit(counted_step, donate_argnums=0)
    epsilon = jnp.float32(config.search.epsilon_max)  # fixed during projection (SPEC 6.5)
    cutout_prob = jnp.float32(config.data.cutout_prob)
    done_epochs = sum(ev.tune_epochs for ev in plan[:start_event])
    progress = Progress("select", total_epochs * spe, done_epochs * spe, config.log_every_seconds)
    for ev in plan[start_event:]:
        for j, d in enumerate(ev.decisions):
            state, record = selector.decide(state, ev, j, d)
            decision_log.write(ev.index, record)
            what = f"{d.cell_type} {d.kind} {d.target}"
            logger.info("Event %d/%d %s -> %s", ev.index + 1, len(plan), what, record["choice"])
        for e in range(ev.tune_epochs):
            state, means = tuning.tune_epoch(
                tune_step, state, search_data, keys.tune, spe, epsilon, cutout_prob
            )
            epoch = ev.epoch + e
            means.update(event=ev.index, epoch=epoch, lr=float(lr_schedule(epoch * spe)))
            tune_log.write(int(state.step), means)
            done_epochs += 1
            progress.maybe_report(
                done_epochs * spe, {"epoch": epoch, "train_loss": means["train_loss"]}, force=True
            )
        meta = {"event": ev.index, "start_step": start_step, "stage": "select"}
        ckpt.save(ev.index, state, meta)
    ckpt.close()
    decision_log.close()
    tune_log.close()

    _warn_none_kept(space, state.arch)
    final = genotype.derive_genotype(space, _to_numpy(arch.mixing_weights(state.arch)))
    _finish(workdir, space, final, magnitude, sel.method)
    records = _read_jsonl(decision_log.path)
    return SelectResult(final, magnitude, state, records, dict(trace_counts))


def _finish(workdir, space: spaces.SearchSpace, final, magnitude, method: str) -> None:
    genotype.save_json(
        final,
        os.path.join(workdir, "genotype.json"),
        method=method,
        space=space.name,
        stage="select",
        magnitude=magnitude.to_text(),
    )
    draw.write_cells(final, workdir)
    logger.info("Selected genotype (%s): %s", method, final.to_text())
    logger.info("Magnitude genotype of the same supernet: %s", magnitude.to_text())
