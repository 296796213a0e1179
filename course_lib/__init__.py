"""course_lib: the reference implementations behind the Transformers course.

One module per concept, each introduced by a notebook (named in its docstring). Imports
point down only, layer by layer:

- ``data``: tokenizers, generated tasks, corpora and the offline-asset registry (imports
  nothing above it);
- the concepts: attention (01), multihead (02), positional (03), encoder (04), decoder (05),
  batching, training and decoding (06), bert (07), gpt and sampling (08), efficient (09);
  ``device`` picks the device and the run profile;
- on top: ``checks`` (the student-facing checks of the visible tests, one module per
  notebook) and ``viz`` (the figures).

The instructor's grading tools are a package of their own, ``course_grader``.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("transformers-course")  # the one version number lives in pyproject.toml
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"
