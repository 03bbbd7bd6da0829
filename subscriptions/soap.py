"""Campaign's nms:subscription#Subscribe and #Unsubscribe, as thin adapters over subscription_request.

Both answer at once with an empty response: the request is staged in nms:subscriptionRcpStg and
applied by the next processing run, as in Campaign v8 (reference/campaign-v8-behaviour.md §2.5, §6).
Campaign's documented request names the parameters `service`, `content` (holding the recipient
document) and `create`; the schema names them serviceName, recipient, create. Either works, and
so does position.
"""

from campaignsite.errors import InvalidInput, Problem
from campaignsite.soap import SoapCall, soap_method
from subscriptions import services

SERVICE = "nms:subscription"
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False, "": False}


def _recipient(call: SoapCall) -> tuple[str, str]:
    """(recipient id, email) of the recipient document: `<recipient _key="@email" email="..."/>` or `id=`."""
    element = call.arg("recipient", "content")
    if element is None:
        raise InvalidInput("The call has no recipient.", [Problem(
            'add the recipient document, e.g. <content><recipient _key="@email" email="a@example.com"/></content>',
            attribute="recipient")])
    children = [child for child in element if isinstance(child.tag, str)]
    document = children[0] if children else element
    return (document.get("id") or "").strip(), (document.get("email") or "").strip()


def _create(call: SoapCall) -> bool:
    raw = call.text("create").lower()
    if raw not in _BOOLEANS:
        raise InvalidInput("The create parameter is not a boolean.",
                           [Problem("write true or false", attribute="create", value=raw)])
    return _BOOLEANS[raw]


@soap_method(SERVICE, "Subscribe",
             params=(("serviceName", "string"), ("recipient", "DOMElement"), ("create", "boolean")))
def subscribe(call: SoapCall):
    """Subscribe the recipient to the comma-separated services; `create` creates an unknown recipient."""
    recipient_id, email = _recipient(call)
    services.subscription_request(service_names=call.text("serviceName", "service"), recipient_id=recipient_id,
                                  email=email, create=_create(call), origin="soap", user=call.user)
    return ()


@soap_method(SERVICE, "Unsubscribe", params=(("serviceName", "string"), ("recipient", "DOMElement")))
def unsubscribe(call: SoapCall):
    """Unsubscribe the recipient from the services; with no service name, put it on the denylist."""
    recipient_id, email = _recipient(call)
    services.subscription_request(service_names=call.text("serviceName", "service"), recipient_id=recipient_id,
                                  email=email, unsubscribe=True, origin="soap", user=call.user)
    return ()
