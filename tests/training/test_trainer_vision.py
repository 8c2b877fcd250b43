"""TopoTrainer on image classifiers: a Conv2d (ResNet) and a ViT step equal a hand-computed SGD step of
task + tau * topo; eval_accuracy through compute_metrics; the card's top-1 accuracy."""

import dataclasses

import pytest
import torch
from conftest import sgd_step, tiny_resnet, tiny_vit
from datasets import Dataset
from transformers import TrainingArguments

from hf_toponets import TopoConfig, TopoTrainer, topo_loss
from hf_toponets.evaluation.classification import compute_accuracy
from hf_toponets.training.images import collate_images

RESNET = TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"])
VIT = TopoConfig(target_modules=["fc2"])


def image_dataset(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 32, 32, generator=g)
    return Dataset.from_dict({"pixel_values": pixels.tolist(), "labels": torch.randint(0, 10, (n,), generator=g).tolist()})


def args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=1, learning_rate=0.5, optim="sgd",
                lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to=[], save_strategy="no",
                logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True, remove_unused_columns=False)
    return TrainingArguments(**{**base, **kw})


def manual_step(build, topo, tau, data, lr=0.5):
    """Oracle: one SGD step on the full batch with loss = cross-entropy + tau * topo_loss, by hand."""
    model = build(seed=0)
    batch = collate_images([data[i] for i in range(len(data))])
    loss = model(**batch).loss + tau * topo_loss(model, topo)
    return sgd_step(model, loss, lr)


@pytest.mark.parametrize("build, topo", [(tiny_resnet, RESNET), (tiny_vit, VIT)])
def test_step_equals_a_hand_computed_sgd_step(tmp_path, build, topo):
    data = image_dataset()
    model = build(seed=0)
    trainer = TopoTrainer(model=model, args=args(tmp_path), train_dataset=data, data_collator=collate_images,
                          topo_config=dataclasses.replace(topo, tau=3.0))
    trainer.train()
    oracle, start = manual_step(build, topo, 3.0, data), build(seed=0)
    names = list(trainer.topo_config.sheets)
    assert len(names) == (5 if build is tiny_resnet else 2)
    for name in names:
        w, w_or, w0 = (m.get_submodule(name).weight.detach() for m in (model, oracle, start))
        assert float((w - w0 - (w_or - w0)).norm() / (w_or - w0).norm()) < 1e-5, name
    # the topographic term moved the weights: tau = 0 gives another step
    plain = manual_step(build, topo, 0.0, data)
    assert not torch.allclose(plain.get_submodule(names[0]).weight, oracle.get_submodule(names[0]).weight, atol=1e-6)


def test_eval_accuracy_is_top1_of_the_logits(tmp_path):
    data = image_dataset(n=12, seed=1)
    model = tiny_resnet(seed=0)
    trainer = TopoTrainer(model=model, args=args(tmp_path, per_device_eval_batch_size=5), train_dataset=data,
                          eval_dataset=data, data_collator=collate_images, compute_metrics=compute_accuracy,
                          topo_config=RESNET)
    metrics = trainer.evaluate()
    model.eval()
    with torch.no_grad():
        batch = collate_images([data[i] for i in range(12)])
        expected = (model(batch["pixel_values"]).logits.argmax(1) == batch["labels"]).double().mean().item()
    assert metrics["eval_accuracy"] == pytest.approx(expected)
