import wsgi_covguard

wsgi_covguard.start()
import notesapi  # noqa: E402 (after start(): its import-time lines count)

app = wsgi_covguard.CovGuardASGI(notesapi.api)
