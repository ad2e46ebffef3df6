from setuptools import setup

setup(
    name="minicnn",
    version="0.1.0",
    description="A from-scratch CNN engine and the mid-level transfer method of Oquab et al. (CVPR 2014)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "minicnn",
        "minicnn.ops",
        "minicnn.data",
        "minicnn.transfer",
        "minicnn.evaluate",
        "minicnn.commands",
        "minicnn.interop",
        "minicnn.kernels",
        "minicnn.kernels.cpu",
        "minicnn.kernels.cuda",
    ],
    # The raw array kernels live at the top level (kernels/) so that a reader finds them
    # beside the engine; they install as minicnn.kernels.
    package_dir={"minicnn.kernels": "kernels"},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "scipy>=1.10",
        "pillow>=10.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "tomli>=2.0; python_version < '3.11'",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        # numba-cuda brings numba.cuda's CUDA 12 compiler; numba-cuda 0.30 fails on numpy 2.5
        # (it types np.row_stack, which numpy 2.5 removed)
        "gpu": ["cupy-cuda12x>=13.0", "numba-cuda[cu12]>=0.30", "numpy<2.5"],
        # pretrained weights in and out (minicnn.interop): ONNX and Caffe files
        "interop": ["onnx>=1.14", "protobuf>=4.21"],
        # data-parallel runs on one machine (mpiexec -n N minicnn ...): mpi4py and MPICH's wheel,
        # which brings mpiexec; on a cluster, mpi4py built against the site's MPI instead
        "distributed": ["mpi4py>=4.0", "mpich>=4.2"],
        # onnxruntime is the tests' oracle for the ONNX import and export; mpi4py and mpich run
        # tests/test_distributed.py under mpiexec; hypothesis generates the readers' fuzz inputs
        "dev": ["pytest>=7.4", "ruff==0.17.6", "onnx>=1.14", "protobuf>=4.21", "onnxruntime>=1.16",
                "mpi4py>=4.0", "mpich>=4.2", "hypothesis>=6.100"],
        # the documentation site (mkdocs build --strict): Material theme, API pages from docstrings
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    },
    entry_points={"console_scripts": ["minicnn = minicnn.cli:main"]},
)
