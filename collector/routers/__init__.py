"""HTTP routes, one module per area. `collector.app` includes every router
named in ROUTERS, in order; to add an area, add its module name here (e.g.
"webrtc" for the WebRTC reference peer, "reflector" for the throttling
reflector): the module must define `router = APIRouter(...)`."""

ROUTERS: tuple[str, ...] = (
    "health",
    "probes",
    "measurements",
    "export",
    "control",
    "dashboard",  # the dashboard's pages (collector/dashboard)
    "changes",  # /api/v1/changes, /changes.atom, /api/v1/subscriptions
    "assets",  # /static/*, /docs (Swagger UI from the swagger-ui-bundle package)
    "webrtc",  # POST /api/v1/webrtc/offer (the WebRTC reference peer)
    "reflector",  # /api/v1/reflector/sessions (the throttling reflector)
)
