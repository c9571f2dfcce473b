"""The LightningModule: one logit and BCE (optionally with an auxiliary diagnosis head), or one logit per diagnosis
and the likelihood of each image's allowed diagnoses; the optimiser and its schedule; and the linear probe of
LP-FT."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from ..backbones import backbone
from .models import create_model


class LesionClassifier(L.LightningModule):
    """Wraps a network with one output logit (``forward``: (N, 3, H, W) -> logits (N,)) or, with ``num_classes``
    > 1, one per diagnosis (-> (N, num_classes), in the order of ``diagnoses.DIAGNOSES``)."""

    def __init__(self, arch: str, pretrained: str, lr: float, weight_decay: float, optimizer: str,
                 warmup_epochs: float, freeze_blocks: int = 0, diagnosis_loss: float = 0.0,
                 n_diagnoses: int = 0, num_classes: int = 1):
        super().__init__()
        self.save_hyperparameters()
        self.net = create_model(arch, pretrained=pretrained, num_classes=num_classes).to(
            memory_format=torch.channels_last)
        # Seven-class task: per training image, the diagnoses its labels allow ((n, C) bool), and per validation
        # batch item p(skin cancer) is what val_auc ranks (diagnoses.IS_CANCER marks the cancers' columns).
        self.train_allowed: torch.Tensor | None = None
        self.register_buffer("is_cancer", torch.zeros(num_classes, dtype=torch.bool), persistent=False)
        self.val_auc, self.val_acc = BinaryAUROC(), BinaryAccuracy()
        # The high-resolution early layers cost most of the backward pass and learn generic edges;
        # freezing them trains ~1.3x (2 blocks) to ~1.6x (3 blocks) faster on CPU at 224 px.
        self.frozen = self._frozen_modules(freeze_blocks)  # a plain list: not registered twice
        for m in self.frozen:
            m.requires_grad_(False)
        # per training image, added to its logit (or logits: (n, C)) in the loss
        self.train_offsets: torch.Tensor | None = None
        # Auxiliary diagnosis head (recipe.diagnosis_loss): trained beside the melanoma logit, never saved with the
        # network. train_dx: per training image, its diagnosis index, or -1 where the data names none.
        if diagnosis_loss > 0 and not hasattr(self.net, "forward_head"):
            raise ValueError(f"diagnosis_loss needs a timm model with pooled features (got {arch})")
        self.dx_head = torch.nn.Linear(self.net.num_features, n_diagnoses) if diagnosis_loss > 0 else None
        self.train_dx: torch.Tensor | None = None

    def _frozen_modules(self, n: int) -> list[torch.nn.Module]:
        if n <= 0:
            return []
        family = backbone(self.hparams.arch)
        if family.frozen is None:
            raise ValueError(f"freeze_blocks is not defined for {self.hparams.arch} (backbone family {family.name})")
        return family.frozen(self.net, n)

    def on_train_epoch_start(self):
        for m in self.frozen:
            m.eval()  # frozen layers keep their ImageNet batch-norm statistics too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last)).squeeze(1)

    def training_step(self, batch, batch_idx):
        if batch is None:  # every image of the batch was unreadable
            return None
        x, y, idx = batch
        idx = idx.to(y.device)
        if self.dx_head is None:
            logits, dx_logits = self(x), None
        else:  # one pass through the features, two heads on them
            pooled = self.net.forward_head(self.net.forward_features(x.contiguous(memory_format=torch.channels_last)),
                                           pre_logits=True)
            logits, dx_logits = self.net.get_classifier()(pooled).squeeze(1), self.dx_head(pooled)
        if self.train_offsets is not None:  # logit adjustment: the source's prior enters the loss, not the net
            logits = logits + self.train_offsets.to(logits.device)[idx]
        if self.train_allowed is not None:
            loss = set_nll(logits, self.train_allowed.to(logits.device)[idx])
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
            return loss
        loss = F.binary_cross_entropy_with_logits(logits, y)
        if dx_logits is not None:
            dx = self.train_dx.to(y.device)[idx]
            named = dx >= 0  # images whose data names no diagnosis add nothing; the mean is over those that do
            per_image = F.cross_entropy(dx_logits, dx.clamp(min=0), reduction="none") * named
            dx_loss = per_image.sum() / named.sum().clamp(min=1)
            self.log("train_dx_loss", dx_loss, on_step=False, on_epoch=True, batch_size=len(y))
            loss = loss + self.hparams.diagnosis_loss * dx_loss
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        if batch is None:
            return
        x, y, _ = batch
        logits = self(x)
        if logits.ndim == 2:  # seven classes: the malignant label against p(skin cancer), what the verdict uses
            p = logits.float().softmax(1)[:, self.is_cancer].sum(1).clamp(1e-7, 1 - 1e-7)
            loss = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
        else:
            p, loss = logits.sigmoid(), F.binary_cross_entropy_with_logits(logits, y)
        # torchmetrics gathers predictions from every rank before computing ROC-AUC.
        self.val_auc.update(p, y.int())
        self.val_acc.update(p, y.int())
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_validation_epoch_end(self):
        self.log("val_auc", self.val_auc.compute(), prog_bar=True)
        self.log("val_acc", self.val_acc.compute(), prog_bar=True)
        self.val_auc.reset()
        self.val_acc.reset()

    def configure_optimizers(self):
        hp = self.hparams
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[hp.optimizer]
        opt = opt_cls([p for p in self.parameters() if p.requires_grad], lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(hp.warmup_epochs * total / max(1, self.trainer.max_epochs)))

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def set_nll(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log p(the image's allowed diagnoses) under softmax(logits): cross-entropy where one
    diagnosis is named, the likelihood of the set where the label is partial (benign, or malignant). The torch twin of
    :func:`melanoma.diagnoses.partial_nll`, which calibration uses without torch."""
    return (logits.logsumexp(1) - logits.masked_fill(~allowed, float("-inf")).logsumexp(1)).mean()


@torch.no_grad()
def fit_linear_probe(net: torch.nn.Module, loader, Cs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)) -> dict:
    """Stage 1 of LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features and
    underperform out-of-distribution"): fit the classifier by logistic regression on the pretrained
    network's pooled features, before any fine-tuning. A randomly initialised head sends large,
    arbitrary gradients into the pretrained layers during the first steps and distorts the features
    that carry over to other clinics' images; a head that already fits gives small, meaningful ones.

    The probe must fit what fine-tuning will feed it, or it starts worse than a random head (measured on
    256 held-out Kaggle images: a probe under ImageNet's batch-norm statistics on un-augmented images
    met training losses of 1-6). So batch norm first takes these images' statistics (fine-tuning
    normalises by batch statistics), ``loader`` should yield *augmented* training images (images
    (N, 3, H, W), labels (N,), index), and the regularisation ``C`` is chosen by 5-fold cross-validated
    log loss on them. ``net``: a timm model with one output; its ``get_classifier()`` (a Linear D -> 1)
    and batch-norm statistics are overwritten in place. Returns n, the chosen C and the training ROC-AUC.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    from torch.optim.swa_utils import update_bn

    head = net.get_classifier() if hasattr(net, "forward_head") else None
    if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
        raise ValueError("linear_probe needs a timm model with a single-logit linear classifier")
    was_training = net.training
    update_bn((b[0].contiguous(memory_format=torch.channels_last) for b in loader if b is not None), net)
    net.eval()
    feats, labels = [], []
    for batch in loader:
        if batch is None:
            continue
        x, y, _ = batch
        feats.append(net.forward_head(net.forward_features(x.contiguous(memory_format=torch.channels_last)),
                                      pre_logits=True).float())
        labels.append(y)
    net.train(was_training)
    f, y = torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(int)
    scaler = StandardScaler().fit(f)  # for the solver's conditioning; folded back into the weights below
    lr = LogisticRegressionCV(Cs=list(Cs), cv=5, scoring="neg_log_loss", max_iter=2000).fit(scaler.transform(f), y)
    w = lr.coef_[0] / scaler.scale_
    b = lr.intercept_[0] - float(w @ scaler.mean_)
    head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype)[None])
    head.bias.copy_(torch.as_tensor([b], dtype=head.bias.dtype))
    return {"n": len(y), "C": float(lr.C_[0]), "train_auc": round(float(roc_auc_score(y, f @ w + b)), 6)}
