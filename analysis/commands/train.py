"""`aejets train`: fit PCA or train an autoencoder on jet images, save the model folder."""

import logging
from pathlib import Path

from analysis.errors import ConfigError

log = logging.getLogger("aejets.train")

DESCRIPTION = """\
Train one model of the study on the training-pool jets (even event numbers) of a
dataset's images (IMAGES/<dataset>/part-*.parquet from 'aejets images') and write
OUT/<name>/ with model.keras, saved_model/ and card.json. With --contamination
top:0.05, 5% of the training jets are signal jets (the unsupervised mode); their
event numbers go into the model card. With --latent-scan, measure the validation
loss against the latent dimension (and the PCA eigenvalue spectrum) instead and
write OUT/latent_scan_<model>.json and .png."""


def _contamination(text):
    signal, sep, fraction = text.partition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = None
    if not sep or not signal or value is None or not 0 < value < 1:
        raise ConfigError(
            f"--contamination expects SIGNAL:FRACTION with 0 < FRACTION < 1, e.g. "
            f"top:0.05; got {text!r}"
        )
    return signal, value


def _latents(text):
    try:
        values = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(
            f"--latent-scan expects positive integers separated by commas, e.g. "
            f"2,4,6,8,12; got {text!r}"
        )
    return values


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="train PCA, dense or CNN autoencoders", description=DESCRIPTION
    )
    add = parser.add_argument
    add("--model", required=True, choices=("pca", "dense", "cnn"))
    add("--dataset", required=True, help="background dataset name, e.g. qcd")
    add("--images", type=Path, default=Path("images"), help="image folder (images)")
    add("--contamination", metavar="SIGNAL:FRACTION", help="e.g. top:0.05")
    add("--latent", type=int, default=6, help="latent dimension k (6)")
    add("--epochs", type=int, default=20, help="most epochs; early stopping (20)")
    add("--patience", type=int, default=5, help="early-stopping patience (5)")
    add("--batch-size", type=int, default=32, help="jets per batch (32)")
    add(
        "--out",
        type=Path,
        default=Path("models-trained"),
        help="models folder (models-trained)",
    )
    add("--name", help="model folder name (default: model or model_SIGNALFRACTION)")
    add(
        "--preset",
        choices=("auto", "cpu", "paper"),
        default="auto",
        help="CNN width: paper (128 filters) where a GPU is visible, else cpu (32)",
    )
    add("--seed", type=int, default=1, help="random seed (1)")
    add("--latent-scan", metavar="K1,K2,...", help="scan these latent dimensions")
    parser.set_defaults(func=run)


class _Bar:
    """A tqdm bar created on the first progress report, when the total is known."""

    def __init__(self, unit):
        self.unit, self.bar = unit, None

    def __call__(self, done, total):
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit=self.unit, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_positive(args):
    for option in ("--epochs", "--latent", "--batch-size"):
        value = getattr(args, option[2:].replace("-", "_"))
        if value < 1:
            raise ConfigError(f"{option} must be a positive integer; got {value}")


def run(args):
    from analysis.commands.generate import check_output_folder

    _check_positive(args)
    contamination = _contamination(args.contamination) if args.contamination else None
    latents = _latents(args.latent_scan) if args.latent_scan else None
    check_output_folder(args.out, "--out")
    if latents:
        return _scan(args, latents, contamination)

    from models.training import train_and_save

    bar = _Bar("batch")
    try:
        folder, card = train_and_save(
            args.out,
            args.model,
            args.images,
            args.dataset,
            name=args.name,
            latent=args.latent,
            epochs=args.epochs,
            preset=args.preset,
            seed=args.seed,
            contamination=contamination,
            batch_size=args.batch_size,
            patience=args.patience,
            progress=bar,
        )
    finally:
        bar.close()
    print(
        f"{folder}: {card['architecture']} k={card['latent']}, "
        f"{card['training']['n_train_jets']} training jets, "
        f"{card['epochs_run']} epochs, train loss {card['final_train_loss']:.4g}, "
        f"validation loss {card['final_validation_loss']:.4g}"
    )
    return 0


def _scan(args, latents, contamination):
    if contamination is not None:
        raise ConfigError(
            "--latent-scan chooses k on background only; drop --contamination"
        )
    from models.latent import latent_scan

    architectures = ("pca",) if args.model == "pca" else ("pca", args.model)
    bar = _Bar("model")
    try:
        result = latent_scan(
            args.images,
            args.dataset,
            latents,
            architectures,
            epochs=args.epochs,
            preset=args.preset,
            seed=args.seed,
            batch_size=args.batch_size,
            patience=args.patience,
            out_dir=args.out,
            name=args.model,
            progress=bar,
        )
    finally:
        bar.close()
    for architecture in architectures:
        losses = ", ".join(
            f"k={k}: {v:.4g}"
            for k, v in zip(
                latents, result[architecture]["validation_loss"], strict=True
            )
        )
        print(f"{architecture} validation loss: {losses}")
    print(f"wrote {args.out / f'latent_scan_{args.model}.json'} and .png")
    return 0
