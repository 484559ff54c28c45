"""The select stage (SPEC 7): a registered selector (PT, PT-Mag, magnitude, or yours) on
a searched supernet.

genotype = run_select(config, workdir, search_state, setup, search_data)

Writes to `workdir`: decisions.jsonl (one line per decision, every candidate's scores),
select_metrics.jsonl (+ TensorBoard) for the tuning epochs, one orbax checkpoint per
decision event in checkpoints_select/, genotype.json (the selected cell),
genotype_magnitude.json (the DARTS read-out of the same searched supernet), cells.dot
and cells.png. Rerunning resumes after the last finished event and ends with the
genotype of an uninterrupted run.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax import arch, config_lib, families, genotype, spaces
from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress, logger, read_jsonl
from nas_jax.search import methods
from nas_jax.selection import decisions, draw, schedule, scoring, selectors, tuning
from nas_jax.train import loop as loop_lib

_KEY_TAG = 0x5E1EC7  # separates the selection's random streams from the search's


def validate_config(config) -> None:
    """Raises config_lib.ConfigError naming the bad value and the accepted ones."""
    sel, chk = config.select, config_lib.check_choice
    chk("select.method", sel.method, selectors.SELECTORS)
    chk("select.criterion", sel.criterion, decisions.CRITERIA)
    chk("select.edge_criterion", sel.edge_criterion, decisions.CRITERIA)
    chk("select.topology", sel.topology, decisions.TOPOLOGIES)
    chk("select.edge_order", sel.edge_order, schedule.EDGE_ORDERS)
    chk("select.tune_schedule", sel.tune_schedule, tuning.SCHEDULES)
    # Numbers and booleans: config_lib.RULES (checked first, by pipeline.validate).
    space = spaces.get_space(config.model.space)
    try:
        schedule.decision_epochs(schedule.num_events(space), sel.tune_epochs, space.family)
    except ValueError as e:
        raise config_lib.ConfigError(f"select.tune_epochs={sel.tune_epochs}: {e}") from None


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
    """The select stage after `search.run.run_search`; returns the selected genotype."""
    return select(config, workdir, search_state, setup, search_data).genotype


def _to_numpy(weights) -> dict:
    return {t: np.asarray(w) for t, w in weights.items()}


def make_context(config, setup, search_data) -> selectors.SelectionContext:
    """The selectors' view of the supernet: scoring on the held-out half with the search
    method's mixing weights."""
    sel, space = config.select, setup.space
    protocol = scoring.DataProtocol.from_config(config.data, search_data.mean, search_data.std)
    inputs = [len(space.node_edges[n]) for n in space.prunable_nodes]
    scorer = scoring.Scorer(
        setup.model, protocol, max_edges=max(inputs, default=1), chunk=sel.score_chunk,
        write_back=sel.write_back_stats,
    )  # fmt: skip
    return selectors.SelectionContext(
        space=space,
        options=sel,
        mixing=methods.mixing_from_config(config.search, setup.schedule),
        scorer=scorer,
        split=(search_data.valid_x, search_data.valid_y),
        num_batches=protocol.num_batches(int(search_data.valid_y.shape[0]), sel.eval_batches),
    )


def decide(ctx: selectors.SelectionContext, selector: selectors.Selector, state, key,
           event: schedule.Event, d: schedule.Decision):  # fmt: skip
    """Applies one decision of `event`; returns (state, decisions.jsonl record)."""
    t = d.cell_type
    record = {"event": event.index, "epoch": event.epoch, "cell_type": t, "kind": d.kind}
    before = state.arch
    if d.kind == "op":
        if int(state.arch.decided_op[t][d.target]) >= 0:
            raise RuntimeError(
                f"Edge {d.target} of {t} is already decided: checkpoint/plan mismatch"
            )
        names = ctx.space.edge_ops(t, d.target)
        record.update(edge=int(d.target), edge_name=ctx.space.edge_name(d.target),
                      candidates=list(names))  # fmt: skip
        op, fields, state = selector.decide_op(ctx, state, key, t, d.target)
        record.update(fields, choice=names[op], choice_index=int(op))
        state = state._replace(arch=arch.decide_op(state.arch, t, d.target, op))
    else:
        if d.target not in arch.undecided_nodes(state.arch, ctx.space, t):
            raise RuntimeError(
                f"Node {d.target} of {t} is already decided: checkpoint/plan mismatch"
            )
        edges = ctx.space.node_edges[d.target]
        record.update(node=int(d.target), node_name=ctx.space.state_name(d.target),
                      candidates=list(edges),
                      candidate_names=[ctx.space.edge_name(e) for e in edges])  # fmt: skip
        kept, fields, state = selector.decide_node(ctx, state, key, t, d.target)
        record.update(fields, choice=[int(e) for e in kept],
                      choice_names=[ctx.space.edge_name(int(e)) for e in kept])  # fmt: skip
        state = state._replace(arch=arch.prune_node(state.arch, ctx.space, t, d.target, kept))
    if ctx.options.log_accuracy:  # on the batches of the first scoring pass
        for when, a in (("before", before), ("after", state.arch)):
            acc, loss = ctx.evaluate(state, jax.random.fold_in(key, 0), a)
            record[f"valid_acc_{when}"], record[f"valid_loss_{when}"] = acc, loss
    return state, record


def describe_decision(record: dict) -> str:
    """One decisions.jsonl record in words: 'cell edge 3 (node 2 <- node 0): op
    nor_conv_1x1', 'normal node 2: keeps edges 5 (node 2 <- c_{k-2}), 7 (node 2 <- node 0)'.
    Records of earlier versions, without the names, are shown with indices only."""
    t = record["cell_type"]
    if record["kind"] == "op":
        name = f" ({record['edge_name']})" if "edge_name" in record else ""
        return f"{t} edge {record['edge']}{name}: op {record['choice']}"
    names = record.get("choice_names") or [None] * len(record["choice"])
    kept = ", ".join(f"{e} ({n})" if n else str(e) for e, n in zip(record["choice"], names))
    node = record.get("node_name", f"state {record['node']}")
    return f"{t} {node}: keeps edges {kept}"


def _warn_none_kept(space, a: arch.ArchState) -> None:
    """SPEC 7.9 pitfall: a read-out that skips `none` reports a kept `none` edge as
    another op."""
    if not families.get_family(space.family).magnitude_skips_none:
        return
    for t in space.cell_types:
        for e in range(space.num_edges):
            op = int(a.decided_op[t][e])
            if bool(a.edge_kept[t][e]) and op >= 0 and space.edge_ops(t, e)[op] == "none":
                logger.warning("Kept edge %d of %s was decided 'none'; the genotype shows "
                               "another op there (SPEC 7.9)", e, t)  # fmt: skip


def select(config, workdir: str, search_state, setup, search_data) -> SelectResult:
    """`run_select` with everything a test or a notebook wants to look at."""
    sel, space = config.select, setup.space
    selector = selectors.SELECTORS.get(sel.method)
    os.makedirs(workdir, exist_ok=True)
    magnitude = genotype.derive_genotype(space, _to_numpy(arch.mixing_weights(search_state.arch)))
    genotype.save_json(magnitude, os.path.join(workdir, "genotype_magnitude.json"),
                       method="magnitude", space=space.name, stage="select")  # fmt: skip
    if not selector.progressive:
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
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta = restored
        start_event, start_step = meta["event"] + 1, meta["start_step"]
        logger.info("Resumed selection after event %d (of %d)", meta["event"], len(plan))
    decision_log = MetricsWriter(workdir, "decisions", tensorboard=False)
    tune_log = MetricsWriter(workdir, "select_metrics")
    for writer in (decision_log, tune_log):
        writer.truncate_after("event", start_event)

    ctx = make_context(config, setup, search_data)
    trace_counts = ctx.scorer.trace_counts
    raw_step = tuning.make_tune_step(
        setup, config, tx, lr_schedule, search_data.mean, search_data.std, start_step
    )

    def counted_step(*args):
        trace_counts[("tune", None)] += 1
        return raw_step(*args)

    stage = tuning.TuneStage(setup, config, tx, lr_schedule, search_data.mean, search_data.std,
                             start_step, step_fn=counted_step)  # fmt: skip
    done_epochs = sum(ev.tune_epochs for ev in plan[:start_event])
    progress = Progress("select", total_epochs * spe, done_epochs * spe, config.log_every_seconds)
    loop = loop_lib.EpochLoop(
        stage, keys=keys.tune, shared=search_data, runs=[loop_lib.RunFiles(tune_log)],
        progress=progress, progress_offset=start_step,
    )  # fmt: skip
    try:
        for ev in plan[start_event:]:
            for j, d in enumerate(ev.decisions):
                key = jax.random.fold_in(jax.random.fold_in(keys.score, ev.index), j)
                state, record = decide(ctx, selector, state, key, ev, d)
                decision_log.write(ev.index, record)
                logger.info("Event %d (of %d): %s", ev.index, len(plan), describe_decision(record))
            stage.event = ev.index
            state = loop.run(state, range(ev.epoch, ev.epoch + ev.tune_epochs))
            meta = {"event": ev.index, "start_step": start_step, "stage": "select"}
            ckpt.save(ev.index, state, meta)
    finally:
        for closable in (ckpt, decision_log, tune_log):
            closable.close()

    _warn_none_kept(space, state.arch)
    final = genotype.derive_genotype(space, _to_numpy(arch.mixing_weights(state.arch)))
    _finish(workdir, space, final, magnitude, sel.method)
    records = read_jsonl(decision_log.path)
    return SelectResult(final, magnitude, state, records, dict(trace_counts))


def _finish(workdir, space: spaces.SearchSpace, final, magnitude, method: str) -> None:
    genotype.save_json(final, os.path.join(workdir, "genotype.json"), method=method,
                       space=space.name, stage="select", magnitude=magnitude.to_text())  # fmt: skip
    draw.write_cells(final, workdir, method=method, space=space.name)
    logger.info("Selected genotype (%s): %s", method, final.to_text())
    logger.info("Magnitude genotype of the same supernet: %s", magnitude.to_text())
