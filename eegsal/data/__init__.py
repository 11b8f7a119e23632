"""Loading real recordings into epochs with content, context and subject metadata."""

from eegsal.data.eegbci import SENSORIMOTOR, load_eegbci

__all__ = ["SENSORIMOTOR", "load_eegbci"]
