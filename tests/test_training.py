import pytest
import torch

from mmbook.data.loaders import DeviceLoader
from mmbook.multimodal import captioned_cifar_model
from mmbook.runtime import seed_everything
from mmbook.checkpoints import CHECKPOINT_NAME, load_checkpoint
from mmbook.training import evaluate, fit


def toy_tensors(n=64, seed=0):
    """Images whose mean brightness, and captions whose first token, encode the label."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (labels.view(-1, 1, 1, 1) * 20 + torch.randint(0, 40, (n, 3, 32, 32), generator=generator)).clamp(0, 255).to(torch.uint8)
    text = torch.stack([labels + 2, torch.randint(2, 12, (n,), generator=generator)], dim=1)
    return {"image": images, "text": text, "label": labels}


def run(epochs, checkpoint_dir=None, resume=False, seed=0):
    seed_everything(seed)
    model = captioned_cifar_model("image+text", vocab_size=12)
    loader = DeviceLoader(toy_tensors(), batch_size=16, shuffle=True, seed=seed)
    test = DeviceLoader(toy_tensors(seed=1), batch_size=32)
    history = fit(model, loader, test, epochs=epochs, lr=1e-2, checkpoint_dir=checkpoint_dir, resume=resume, progress=False)
    return model, history


def metrics(history):
    return [{k: v for k, v in r.items() if k not in ("train_seconds", "samples_per_second")} for r in history.records]


def test_fit_learns_a_learnable_task():
    model, history = run(epochs=8)
    assert len(history) == 8
    assert history.last["train_loss"] < history.records[0]["train_loss"]
    assert history.last["test_accuracy"] > 0.5  # chance is 0.1
    assert history.train_seconds > 0


def test_after_epoch_figures_join_each_epochs_record():
    seen = []

    def figures(model, epoch):
        seen.append((epoch, model.training))
        return {"weight_norm": sum(float(p.detach().norm()) for p in model.parameters()), "epoch_twice": 2 * epoch}

    seed_everything(0)
    model = captioned_cifar_model("image+text", vocab_size=12)
    loader = DeviceLoader(toy_tensors(), batch_size=16, shuffle=True, seed=0)
    history = fit(model, loader, epochs=3, lr=1e-2, progress=False, after_epoch=figures)
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert history.column("epoch_twice") == [2.0, 4.0, 6.0]
    norms = history.column("weight_norm")
    assert len(set(norms)) == 3  # measured after each epoch's training, so it changes


def test_after_epoch_may_not_overwrite_the_record():
    model = captioned_cifar_model("image+text", vocab_size=12)
    loader = DeviceLoader(toy_tensors(), batch_size=16, seed=0)
    with pytest.raises(ValueError, match=r"\['train_loss'\].*other names"):
        fit(model, loader, epochs=1, progress=False, after_epoch=lambda model, epoch: {"train_loss": 0.0})


def test_same_seed_gives_identical_metrics_on_cpu():
    assert metrics(run(epochs=2)[1]) == metrics(run(epochs=2)[1])


class InterruptingLoader(DeviceLoader):
    """Raises KeyboardInterrupt part-way through epoch ``at_epoch``, as a reader pressing Ctrl-C would."""

    def __init__(self, *args, at_epoch: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs_started = 0
        self.at_epoch = at_epoch

    def __iter__(self):
        self.epochs_started += 1
        for step, batch in enumerate(super().__iter__()):
            if self.epochs_started == self.at_epoch and step == 2:
                raise KeyboardInterrupt
            yield batch


def test_interrupted_run_resumes_exactly_where_it_stopped(tmp_path, capsys):
    _, straight = run(epochs=3)
    seed_everything(0)
    model = captioned_cifar_model("image+text", vocab_size=12)
    loader = InterruptingLoader(toy_tensors(), batch_size=16, shuffle=True, seed=0, at_epoch=3)
    test = DeviceLoader(toy_tensors(seed=1), batch_size=32)
    with pytest.raises(KeyboardInterrupt):
        fit(model, loader, test, epochs=3, lr=1e-2, checkpoint_dir=tmp_path, progress=False)
    assert "Interrupted after 2 complete epoch(s)" in capsys.readouterr().out
    assert len(load_checkpoint(tmp_path / CHECKPOINT_NAME)["history"]) == 2
    _, resumed = run(epochs=3, checkpoint_dir=tmp_path, resume=True)
    assert metrics(resumed) == metrics(straight)


def test_resume_with_another_length_is_refused(tmp_path):
    run(epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="run of 1 epochs"):
        run(epochs=3, checkpoint_dir=tmp_path, resume=True)


def test_checkpoint_round_trip_restores_the_model(tmp_path):
    model, history = run(epochs=1, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    fresh = captioned_cifar_model("image+text", vocab_size=12)
    fresh.load_state_dict(state["model"])
    test = DeviceLoader(toy_tensors(seed=1), batch_size=32)
    assert evaluate(fresh, test)["accuracy"] == pytest.approx(history.last["test_accuracy"])
    assert state["history"] == history.records


def test_unreadable_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x00 truncated")
    with pytest.raises(ValueError, match="delete it to start afresh"):
        run(epochs=1, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_bad_arguments_are_rejected():
    model = captioned_cifar_model("image", vocab_size=12)
    loader = DeviceLoader(toy_tensors(), batch_size=16)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, loader, epochs=-1, progress=False)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(model, loader, epochs=1, resume=True, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, loader, epochs=1, optimizer="lbfgs", progress=False)
