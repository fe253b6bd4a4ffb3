"""Data-parallel training on several processes, with PyTorch's own engine: torchrun and DDP.

``torchrun`` starts one process per device and gives each its place in environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``).
Every process holds a full replica of the model, trains on its own shard of the data
(:class:`mmbook.data.DeviceLoader` shards by itself once a process group exists), and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients over all
processes during ``backward()``, so every replica takes the same optimizer step.

This module is the small layer between that engine and :func:`mmbook.training.fit`::

    init_from_env()          # under torchrun: join the process group (gloo on CPU, nccl on CUDA)
    model = wrap_model(model, device)    # DDP when there is more than one process
    ...                                   # train; all_reduce_sum() for metrics
    if is_main_process(): save(...)       # rank 0 alone prints, plots and writes files
    cleanup()

Outside torchrun every function here is a no-op or returns the single-process answer
(rank 0 of 1), so the same code runs on one process.

The command line's ``mmbook train --nproc N`` calls :func:`launch_torchrun`, which runs
``python -m torch.distributed.run --standalone --nproc-per-node N -m mmbook train ...``.
Several nodes use torchrun's own flags (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``);
nothing in this module is in their way.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence

import torch
from torch import nn
import torch.distributed as dist

# A collective that waits longer than this raises on every rank that waits, so a rank
# that died or hangs brings the whole job down instead of leaving the others blocked.
DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "MMBOOK_DDP_TIMEOUT"
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def under_torchrun() -> bool:
    """True in a process started by torchrun (``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set)."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def is_initialized() -> bool:
    """True once this process has joined a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in ``0 .. world_size() - 1``; 0 without a process group."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the job; 1 without a process group."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's index on its own node (torchrun's ``LOCAL_RANK``); 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    """True on rank 0, the one process that prints, shows progress bars and plots, and writes files."""
    return rank() == 0


def default_backend(device: torch.device | str | None = None) -> str:
    """``"nccl"`` when the processes train on CUDA, ``"gloo"`` otherwise (CPU, and Apple MPS)."""
    if device is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(timeout_s: float | None = None, device: torch.device | str | None = None) -> torch.device:
    """Join the process group that torchrun set up, and return the device this process trains on.

    Reads torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. The backend is ``nccl``
    when the device is CUDA (each process takes GPU ``LOCAL_RANK``) and ``gloo`` otherwise.
    Every collective gets a timeout: a rank that waits longer than ``timeout_s`` for the
    others raises, its process exits, and torchrun stops the rest.

    Args:
        timeout_s: collective timeout in seconds; default ``$MMBOOK_DDP_TIMEOUT`` or
            :data:`DEFAULT_TIMEOUT_S` (300).
        device: ``None`` picks CUDA when available, else the CPU.

    Returns:
        ``cuda:LOCAL_RANK`` or ``cpu``; outside torchrun, the device without a process group.

    Raises:
        RuntimeError: with a plain explanation when the rendezvous port is taken.
    """
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive (seconds), got {timeout_s}")
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not under_torchrun() or is_initialized():
        return device
    try:
        dist.init_process_group(backend=default_backend(device), timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as error:  # the store's error names EADDRINUSE; say what it means
        if "EADDRINUSE" in str(error) or "address already in use" in str(error).lower():
            raise RuntimeError(
                f"port {os.environ.get('MASTER_PORT')} on {os.environ.get('MASTER_ADDR')} is already in use, "
                f"probably by another training run. Pick a free one (torchrun --master-port, or "
                f"--rdzv-endpoint HOST:PORT), or use --standalone, which picks a free port itself."
            ) from error
        raise
    return device


def silence_other_ranks() -> None:
    """Send ``print`` output of every rank but 0 to nowhere (errors on stderr still show)."""
    if not is_main_process():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def from_env(timeout_s: float | None = None, device: torch.device | str | None = None) -> Iterator[None]:
    """``with from_env(): ...`` joins torchrun's process group, quiets ranks > 0, and leaves the group at the end.

    Outside torchrun it does nothing, so a command can always run inside it. ``device``
    (default: CUDA when available) chooses the backend, as in :func:`init_from_env`.
    """
    if not under_torchrun():
        yield
        return
    init_from_env(timeout_s, device)
    silence_other_ranks()
    try:
        yield
    finally:
        cleanup()


def barrier() -> None:
    """Wait until every rank reaches this line (no-op without a process group)."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place, and return it (unchanged without a process group).

    Args:
        tensor: any shape, on this process's device (CPU for gloo, CUDA for nccl).
    """
    if is_initialized() and world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """``DistributedDataParallel(model)`` when the job has several processes; ``model`` itself otherwise.

    The wrapper broadcasts rank 0's parameters and buffers when it is built, so every
    replica starts equal, and averages gradients over the ranks during ``backward()``.
    BatchNorm layers keep per-rank statistics (each rank normalizes with its own batch);
    on GPUs, ``nn.SyncBatchNorm.convert_sync_batchnorm(model)`` before wrapping computes
    them over the global batch instead (PyTorch's SyncBatchNorm does not run on CPUs).

    Args:
        model: already on ``device``.
        device: the device of this rank; CUDA devices are passed to DDP as ``device_ids``.
    """
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index])
    return DistributedDataParallel(model)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and DDP wrappers (what checkpoints should hold)."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def per_rank_batch_size(global_batch: int, processes: int | None = None) -> int:
    """The batch each rank loads when the global batch is ``global_batch``.

    The command line's ``--batch-size`` is the global batch: ``N`` processes with this
    per-rank batch take exactly the optimizer steps of one process with the global batch
    (see :class:`mmbook.data.DeviceLoader` for why they even see the same samples).

    Raises:
        ValueError: if ``global_batch`` is not a multiple of the number of processes.
    """
    processes = world_size() if processes is None else processes
    if global_batch % processes:
        raise ValueError(
            f"batch size {global_batch} is the global batch (--batch-size) and must be divisible by the "
            f"{processes} processes; use e.g. {max(1, round(global_batch / processes)) * processes}"
        )
    return global_batch // processes


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a TCP server could listen on ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on localhost that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun_command(nproc: int, argv: Sequence[str], *, port: int | None = None, module: str = "mmbook") -> list[str]:
    """The torchrun command line that runs ``python -m module *argv`` on ``nproc`` local processes.

    Args:
        nproc: processes on this machine (one per GPU on a GPU node).
        argv: the module's arguments, e.g. ``["train", "--quick"]``.
        port: ``None`` uses ``--standalone``, where torchrun lets the OS pick a free port;
            a number rendezvouses on ``localhost:port`` instead.
        module: the module to run.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run"]
    if port is None:
        command += ["--standalone"]
    else:
        command += ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}"]
    # --max-restarts 0: a failed rank ends the job (torchrun stops the others) instead of restarting it.
    return command + ["--nproc-per-node", str(nproc), "--max-restarts", "0", "-m", module, *argv]


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` and ``option=VALUE``, e.g. ``--nproc 2``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


def launch_torchrun(nproc: int, argv: Sequence[str], *, port: int | None = None, module: str = "mmbook") -> int:
    """Run ``python -m module *argv`` under torchrun on ``nproc`` processes; return its exit status.

    This is ``mmbook train --nproc N``. The child processes see torchrun's variables, so
    :func:`under_torchrun` is true there and they train instead of launching again.
    ``--nproc`` itself is left out of ``argv``: torchrun's parser would take it for an
    abbreviation of its own ``--nproc-per-node`` and refuse it as ambiguous.

    Raises:
        RuntimeError: if ``port`` is given and already in use.
    """
    if port is not None and not port_is_free(port):
        raise RuntimeError(
            f"port {port} is already in use, probably by another training run; choose another port, "
            f"or leave the port out and torchrun (--standalone) picks a free one"
        )
    command = torchrun_command(nproc, without_option(argv, "--nproc"), port=port, module=module)
    environment = dict(os.environ)
    # Share the cores among the processes unless told otherwise (N processes x all cores
    # would oversubscribe them); torchrun itself would set 1 thread per process.
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(command, env=environment)


def sum_over_ranks(*values: float, device: torch.device | str | None = None) -> tuple[float, ...]:
    """Sums of plain numbers over all ranks (e.g. correct and counted predictions); unchanged on one process.

    The numbers travel as one float64 tensor on ``device`` (CUDA for nccl), so counts below
    2**53 stay exact and the accuracy computed from them equals the single-process one.
    """
    if world_size() <= 1:
        return tuple(float(v) for v in values)
    totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    return tuple(all_reduce_sum(totals).tolist())


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sends every rank the sum of all ranks' gradients for its own rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rows = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, in rank order: ``(B, ...)`` on each of ``N`` ranks -> ``(N * B, ...)``, with gradient.

    Contrastive losses need it: InfoNCE and the sigmoid loss compare every pair of the *global* batch,
    so each rank gathers the embeddings of all ranks (open_clip's ``gather_features`` with
    ``gather_with_grad=True``). Every rank then computes the same loss over the global batch; in the
    backward pass each rank receives the gradients of its own rows summed over the ranks, and DDP's
    average over the ranks turns that into exactly the gradient of one process with the global batch.
    Plain ``all_gather`` carries no gradient: the other ranks' rows would act as constants.

    On one process it returns ``tensor`` itself. Every rank must pass the same number of rows.
    """
    if world_size() <= 1:
        return tensor
    sizes = torch.tensor([tensor.shape[0]], device=tensor.device)
    all_sizes = [torch.empty_like(sizes) for _ in range(world_size())]
    dist.all_gather(all_sizes, sizes)
    if len({int(s) for s in all_sizes}) != 1:
        raise ValueError(f"gather_with_grad needs the same batch on every rank, got {[int(s) for s in all_sizes]} rows; "
                         f"use a training loader with drop_last=True")
    return _GatherWithGrad.apply(tensor)
