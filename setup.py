"""mammo-tfx: a TFX pipeline that trains, gates and ships a mammography screening model."""
from setuptools import find_packages, setup

setup(
    name="mammo-tfx",
    version="0.1.0",
    description="TFX pipeline for end-to-end all-convolutional breast cancer screening (Shen et al.)",
    python_requires=">=3.9,<3.12",
    # kfp/ holds Kubeflow files and must never become an importable package that shadows the kfp library.
    packages=find_packages(include=["mammo_tfx*", "components*", "pipeline*", "trainer_module*"]),
    package_data={"": ["*.pbtxt"]},
    entry_points={"console_scripts": ["mammo-tfx=mammo_tfx.cli:main"]},
)
