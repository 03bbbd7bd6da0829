"""Static files storage: whitenoise's compressed manifest storage once collectstatic has run."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ManifestOrPlainStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed names (cacheable for ever) from the manifest collectstatic writes; without a manifest
    (tests, a shell on a fresh checkout) the plain names, instead of an error on every page."""

    def stored_name(self, name):
        if not self.hashed_files:  # no manifest loaded: collectstatic has not run here yet
            return name
        return super().stored_name(name)
