"""`devenv init` reading a conda environment.yml: pip packages as they are, conda packages through a small table.

Conda names differ from PyPI's and some conda packages are system libraries; the table below says where a
known one goes (a PyPI name, a Debian package, or the CUDA base). Anything not in it is named as not used,
never guessed.
"""

from __future__ import annotations

import re

import yaml

from devenv.spec.discover_model import Found, is_file, read_project_file, yaml_error
from devenv.spec.discover_python import add_line
from devenv.yamlsafe import YamlTooBig, load_limited

# the first found is read; a conda file that is not named environment.yml is common (env.yml, conda.yml), Binder's
# lives under binder/
CONDA_FILES = (
    "environment.yml",
    "environment.yaml",
    "env.yml",
    "env.yaml",
    "conda.yml",
    "conda.yaml",
    "binder/environment.yml",
    "binder/environment.yaml",
)

# conda name -> PyPI name
PYPI = {
    name: name
    for name in (
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "scikit-image",
        "matplotlib",
        "seaborn",
        "plotly",
        "jupyter",
        "jupyterlab",
        "notebook",
        "ipykernel",
        "ipywidgets",
        "ipython",
        "tensorflow",
        "keras",
        "torchvision",
        "torchaudio",
        "transformers",
        "datasets",
        "tokenizers",
        "accelerate",
        "tqdm",
        "requests",
        "pyyaml",
        "pillow",
        "h5py",
        "sympy",
        "networkx",
        "numba",
        "xgboost",
        "lightgbm",
        "catboost",
        "statsmodels",
        "pytest",
        "black",
        "ruff",
        "click",
        "pydantic",
        "polars",
        "pyarrow",
        "dask",
        "joblib",
        "einops",
        "wandb",
        "mlflow",
        "optuna",
        "sentencepiece",
        "nltk",
        "spacy",
        "gensim",
        "opencv-python",
        "pytorch-lightning",
        "lightning",
        "hydra-core",
        "omegaconf",
        "rich",
        "typer",
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "boto3",
        "dvc",
        "tensorboard",
        "jax",
        "termcolor",
        "imageio",
        "tabulate",
        "psutil",
        "tensorboardx",
        "protobuf",
        "lxml",
        "openpyxl",
        "xlrd",
        "beautifulsoup4",
        "regex",
        "shapely",
        "geopandas",
        "xarray",
        "netcdf4",
        "zarr",
        "numexpr",
        "bokeh",
        "altair",
        "streamlit",
        "gradio",
        "pytest-cov",
        "mypy",
        "isort",
        "flake8",
        "pylint",
        "ipympl",
        "widgetsnbextension",
        "jupyter_client",
        "nbformat",
        "nbconvert",
        "cython",
        "pybind11",
        "sentence-transformers",
        "timm",
        "onnx",
        "onnxruntime",
        "huggingface_hub",
        "safetensors",
        "peft",
        "evaluate",
        "librosa",
        "soundfile",
        "pydub",
        "albumentations",
        "kornia",
        "pycocotools",
        "faiss-cpu",
        "umap-learn",
        "hdbscan",
        "pymc",
        "arviz",
        "prophet",
    )
} | {
    "pytorch": "torch",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "tensorflow-gpu": "tensorflow",
    "pytables": "tables",
    "libopencv": "opencv-python",
    "pytorch-lightning": "pytorch-lightning",
    "tensorflow-cpu": "tensorflow-cpu",
    "faiss": "faiss-cpu",
    "pymc3": "pymc3",
    "imageio-ffmpeg": "imageio-ffmpeg",
}
# conda name -> Debian package (the bases are Debian/Ubuntu)
APT = {
    "git": "git",
    "git-lfs": "git-lfs",
    "ffmpeg": "ffmpeg",
    "libgl": "libgl1",
    "mesalib": "libgl1",
    "graphviz": "graphviz",
    "make": "make",
    "cmake": "cmake",
    "gcc": "gcc",
    "gxx": "g++",
    "curl": "curl",
    "wget": "wget",
    "unzip": "unzip",
    "libsndfile": "libsndfile1",
    "openjdk": "default-jre-headless",
    "nodejs": "nodejs",
    "htop": "htop",
    "vim": "vim",
    "tmux": "tmux",
    "sqlite": "sqlite3",
    "openssh": "openssh-client",
    "libgomp": "libgomp1",
    "sox": "sox",
    "poppler": "poppler-utils",
    "tesseract": "tesseract-ocr",
}
# system CUDA: the cuda base provides it; PyPI's torch/jax wheels carry their own
CUDA = {
    "pytorch-cuda",
    "cudatoolkit",
    "cuda-toolkit",
    "cuda",
    "cuda-runtime",
    "cuda-nvcc",
    "cudnn",
    "nccl",
    "cuda-version",
    "cudatoolkit-dev",
}
# parts of a conda environment the bases already have, or that only make sense inside conda
PROVIDED = {
    "pip",
    "setuptools",
    "wheel",
    "python",
    "cpuonly",
    "mkl",
    "blas",
    "libblas",
    "openblas",
    "nomkl",
    "ca-certificates",
    "openssl",
    "_libgcc_mutex",
    "libgcc-ng",
    "libstdcxx-ng",
    "conda",
    "mamba",
}

_SPEC = re.compile(r"(?:[A-Za-z0-9_.-]+::)?([A-Za-z0-9_.-]+)\s*(.*)")


def conda_env(found: Found) -> None:
    name = next((n for n in CONDA_FILES if is_file(found.root, n)), None)
    if name is None:
        return
    text = read_project_file(found, name)
    if text is None:
        return
    try:
        data = load_limited(text)
    except yaml.YAMLError as error:
        raise yaml_error(name, error) from None
    except YamlTooBig as error:
        found.skip(name, "the file", str(error))
        return
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        found.skip(name, "the file", "expected a mapping with a dependencies: list")
        return
    counts = {"pypi": 0, "pip": 0, "apt": 0}
    for item in data.get("dependencies") or []:
        if isinstance(item, dict) and isinstance(item.get("pip"), list):
            for line in item["pip"]:
                counts["pip"] += add_line(found, str(line).strip(), name)
        elif isinstance(item, str):
            conda_package(found, name, item.strip(), counts)
        else:
            found.skip(name, f"dependency {item!r}", "expected a package or a pip: list")
    if counts["pypi"]:
        found.took(name, f"{counts['pypi']} conda package{'s' if counts['pypi'] != 1 else ''} as PyPI packages")
    if counts["pip"]:
        found.took(name, f"{counts['pip']} package{'s' if counts['pip'] != 1 else ''} of its pip: section")
    if counts["apt"]:
        found.took(name, f"{counts['apt']} conda package{'s' if counts['apt'] != 1 else ''} as Debian packages")
    if data.get("channels"):
        found.note(name, f"{name}: channels are not used: packages come from PyPI and Debian")


def conda_package(found: Found, source: str, text: str, counts: dict[str, int]) -> None:
    """One conda package spec (environment.yml, a Dockerfile's `conda install`): PyPI, apt, the cuda base, or named."""
    match = _SPEC.fullmatch(text)
    if match is None:
        found.skip(source, f"conda package {text!r}", "not a conda package spec")
        return
    conda_name, version = match[1].lower(), conda_version(match[2])
    if conda_name == "python":
        number = re.match(r"==?(\d+\.\d+)", version.replace("==", "=").replace(" ", ""))
        if number:
            found.python_pins.append((number[1], source))
        elif version:
            found.python_ranges.append((version, source))
        return
    if conda_name in PYPI:
        counts["pypi"] += add_line(found, f"{PYPI[conda_name]}{version}", source)
    elif conda_name in APT:
        found.add_apt(APT[conda_name], source)
        counts["apt"] += 1
    elif conda_name in CUDA:
        found.system_cuda.append(f"conda package {conda_name} in {source}")
        found.skip(source, f"conda package {conda_name}", "no PyPI/apt equivalent; base: cuda provides CUDA")
    elif conda_name in PROVIDED:
        found.skip(source, f"conda package {conda_name}", "the base image provides it, or it is conda's own")
    else:
        found.skip(
            source,
            f"conda package {conda_name}",
            "no known PyPI/apt equivalent: add it to a requirements file or apt: by hand",
        )


def conda_version(text: str) -> str:
    """A pip specifier from conda's: '=1.26' -> '==1.26.*', '1.26.4=py311_0' -> '==1.26.4.*', '>=1.2' stays."""
    text = text.strip().replace(" ", "")
    if not text:
        return ""
    if text[0].isdigit():
        text = "=" + text
    if text.startswith("==") or text[0] in "<>!~":
        return text.split("=py")[0] if text.startswith("==") else text
    version = text[1:].split("=", 1)[0].rstrip(".*")
    return f"=={version}.*" if version else ""
