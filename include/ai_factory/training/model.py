"""The tabular MLP: numeric inputs and categorical embeddings into an MLP with one head per task.

Architecture: ``[x_num ‖ emb_1(x_cat_1) ‖ … ‖ emb_k(x_cat_k)]`` → ``n_layers`` × (Linear →
BatchNorm → SiLU → Dropout) → Linear head. Embedding widths follow the fastai rule
``min(embedding_dim_max, round(1.6 · cardinality^0.56))``; embedding row 0 is the
out-of-vocabulary slot (see :mod:`ai_factory.training.preprocess`). The head emits one
logit (binary), one logit per class (multiclass) or one value (regression, on the
standardised target scale).

The architecture is fully described by :class:`ModelConfig`, a plain dict in ``model.json``
next to the ``state_dict`` (``model.pt``), so a model loads with
``torch.load(..., weights_only=True)`` and no pickled classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ai_factory.spec import TaskType


def embedding_dim(cardinality: int, cap: int) -> int:
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


@dataclass(frozen=True)
class ModelConfig:
    task: str
    n_numeric: int
    cardinalities: list[int] = field(default_factory=list)
    embedding_dims: list[int] = field(default_factory=list)
    hidden_size: int = 256
    n_layers: int = 3
    dropout: float = 0.1
    output_dim: int = 1

    def __post_init__(self) -> None:
        TaskType(self.task)  # a clear ValueError for an unknown task
        if len(self.cardinalities) != len(self.embedding_dims):
            raise ValueError("cardinalities and embedding_dims must have the same length")
        if self.n_numeric + len(self.cardinalities) == 0:
            raise ValueError("the model needs at least one input feature")
        if self.task == TaskType.MULTICLASS and self.output_dim < 2:
            raise ValueError("a multiclass head needs output_dim >= 2")
        if self.task != TaskType.MULTICLASS and self.output_dim != 1:
            raise ValueError(f"a {self.task} head has output_dim 1, got {self.output_dim}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ModelConfig:
        return cls(**payload)


class TabularMLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, dim) for card, dim in zip(config.cardinalities, config.embedding_dims, strict=True)
        )
        width = config.n_numeric + sum(config.embedding_dims)
        layers: list[nn.Module] = []
        for _ in range(config.n_layers):
            layers += [
                nn.Linear(width, config.hidden_size),
                nn.BatchNorm1d(config.hidden_size),
                nn.SiLU(),
                nn.Dropout(config.dropout),
            ]
            width = config.hidden_size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.output_dim)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        parts = [x_num] if self.config.n_numeric else []
        parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        out = self.head(self.body(torch.cat(parts, dim=1)))
        # Binary and regression heads return [batch]; multiclass returns [batch, classes].
        return out.squeeze(1) if self.config.output_dim == 1 else out


def build_model_config(
    task: TaskType | str,
    n_numeric: int,
    cardinalities: list[int],
    output_dim: int,
    hidden_size: int,
    n_layers: int,
    dropout: float,
    embedding_dim_max: int,
) -> ModelConfig:
    return ModelConfig(
        task=str(TaskType(task)),
        n_numeric=n_numeric,
        cardinalities=list(cardinalities),
        embedding_dims=[embedding_dim(c, embedding_dim_max) for c in cardinalities],
        hidden_size=hidden_size,
        n_layers=n_layers,
        dropout=dropout,
        output_dim=output_dim,
    )


def loss_function(task: TaskType | str, weights: torch.Tensor | None = None, *, regression_loss: str = "mse",
                  huber_delta: float = 1.0) -> nn.Module:
    """The task's loss; ``weights`` is ``pos_weight`` (binary) or per-class weights (multiclass).

    Regression: ``mse``, or ``huber`` (quadratic within ``huber_delta`` standard deviations of
    the standardised target, linear beyond: a few outlying targets stop dominating the fit).
    """
    task = TaskType(task)
    if task == TaskType.BINARY:
        return nn.BCEWithLogitsLoss(pos_weight=weights)
    if task == TaskType.MULTICLASS:
        return nn.CrossEntropyLoss(weight=weights)
    if regression_loss == "huber":
        return nn.HuberLoss(delta=huber_delta)
    if regression_loss != "mse":
        raise ValueError(f"unknown regression_loss {regression_loss!r}; known: mse, huber")
    return nn.MSELoss()


def outputs_to_predictions(task: TaskType | str, outputs: torch.Tensor) -> torch.Tensor:
    """Raw head outputs → probabilities (``[n, classes]`` for classification) or values (regression)."""
    task = TaskType(task)
    outputs = outputs.float()
    if task == TaskType.BINARY:
        p = torch.sigmoid(outputs)
        return torch.stack([1.0 - p, p], dim=1)
    if task == TaskType.MULTICLASS:
        return torch.softmax(outputs, dim=1)
    return outputs
