"""SF015: launch settings (torchrun, Slurm, FSDP) that cannot work together."""

from __future__ import annotations

from collections.abc import Iterator

from specforge.validate.registry import Context, Finding, error, rule


def slurm_seconds(time: str) -> int:
    """A Slurm time limit, [D-]HH:MM:SS (the schema's pattern), in seconds."""
    days, _, clock = time.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


@rule("SF015")
def nodes_and_rendezvous(ctx: Context) -> Iterator[Finding]:
    """Slurm's allocation matches the launch, its signal comes in time; torchrun finds node 0."""
    launch = ctx.spec.launch
    slurm = launch.slurm
    if slurm is None:
        if launch.nnodes > 1 and launch.rdzv_endpoint is None:
            yield error(
                ("launch", "rdzv_endpoint"),
                "multi-node runs need the rendezvous host:port",
                "set launch.rdzv_endpoint to node 0's address, or add a launch.slurm block",
            )
        return
    if slurm.nodes != launch.nnodes:
        yield error(
            ("launch", "slurm", "nodes"),
            f"slurm.nodes is {slurm.nodes} but launch.nnodes is {launch.nnodes}",
        )
    if slurm.gpus_per_node not in (0, launch.nproc_per_node):
        yield error(
            ("launch", "slurm", "gpus_per_node"),
            f"slurm.gpus_per_node is {slurm.gpus_per_node} but launch.nproc_per_node "
            f"is {launch.nproc_per_node}",
        )
    limit = slurm_seconds(slurm.time)
    if slurm.signal_seconds >= limit:
        yield error(
            ("launch", "slurm", "signal_seconds"),
            f"signal_seconds is {slurm.signal_seconds} but the time limit is "
            f"{slurm.time} ({limit} s): the signal would come before training starts",
            "leave the time a step and a checkpoint take, e.g. 300",
        )


@rule("SF015")
def fsdp_settings(ctx: Context) -> Iterator[Finding]:
    """What FSDP does itself, or cannot do."""
    spec = ctx.spec
    fsdp = spec.launch.strategy == "fsdp"
    if fsdp and spec.training.gradient_checkpointing and spec.launch.fsdp.activation_checkpointing:
        yield error(
            ("training", "gradient_checkpointing"),
            "use launch.fsdp.activation_checkpointing alone under FSDP (both recompute twice)",
        )
    q = spec.model.quantization
    if fsdp and q is not None and q.bits != 4:
        yield error(
            ("model", "quantization", "bits"),
            "FSDP shards 4-bit QLoRA weights only (bitsandbytes' 8-bit weights cannot be sharded)",
            "use bits: 4, or strategy: ddp",
        )
    elif fsdp and q is not None and spec.model.dtype == "auto":
        yield error(
            ("model", "dtype"),
            "QLoRA under FSDP stores the 4-bit weights in model.dtype (bnb_4bit_quant_storage), "
            "so FSDP shards them with the rest: name it",
            "dtype: bfloat16 (with precision: bf16)",
        )
