"""Loading real recordings into epochs with content, context and subject metadata."""

from eegsal.data.eegbci import load_eegbci

__all__ = ["load_eegbci"]
