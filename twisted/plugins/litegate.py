"""twistd plugin: `twistd -n litegate --config config.yaml`.

Kept tiny on purpose: importing klein or anything that installs a reactor here would break
`twistd -r <reactor>`, so the real work lives in gatewaylib.tap, loaded only when chosen.
"""

from twisted.application.service import ServiceMaker

litegate = ServiceMaker(
    "litegate",
    "gatewaylib.tap",
    "A stateless LLM gateway with an OpenAI-compatible API, per-app keys and metrics.",
    "litegate",
)
