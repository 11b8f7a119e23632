"""Data: dataset manifests, readers and ready-made loaders."""

from eegsal.data.eegbci import SENSORIMOTOR, load_eegbci
from eegsal.data.loading import load_manifest
from eegsal.data.manifest import ManifestError, read_manifest

__all__ = [
    "SENSORIMOTOR",
    "ManifestError",
    "load_eegbci",
    "load_manifest",
    "read_manifest",
]
