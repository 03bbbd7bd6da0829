"""Campaign-compatible SOAP: envelope, method registry, authentication, responses, faults, views.

Apps declare Campaign methods with `@soap_method(...)` (staging/soap.py, subscriptions/soap.py); the
router at /nl/jsp/soaprouter.jsp parses the envelope with the hardened parser, finds the method from
the body's method element and its `urn:` namespace, authenticates the caller and writes the answer.

Responses and faults are written as literal text, byte for byte in the shape Adobe's acc-js-sdk
accepts: its parser compares qualified names (`SOAP-ENV:Body`, unprefixed `IngestResponse`) and the
literal `xsi:type='xsd:string'`, and fails on anything before `<?xml`
(as Adobe's acc-js-sdk sends and parses them, src/soap.js). A serializer that picks its own prefixes would break it.
"""

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from typing import Any, Callable, Sequence
from xml.sax.saxutils import escape

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from campaignsite.errors import DomainError, InvalidInput, Problem, TooLarge
from campaignsite.http import read_body
from staging.xml import parse_xml

logger = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
LITERAL_XML = "http://xml.apache.org/xml-soap/literalxml"
CONTENT_TYPE = "text/xml;charset=utf-8"

# Campaign's own codes, kept because clients act on them (the SDK turns XSV-350008 into a 401).
SESSION_INVALID = "XSV-350008"
UNKNOWN_METHOD = "SOP-330006"
METHOD_FAILED = "SOP-330011"
# Ours (docs/error-codes.md).
NOT_SOAP = "CST-400010"
SECURITY_TOKEN_MISSING = "CST-401002"
USER_PASSWORD_REFUSED = "CST-401003"
POST_ONLY = "CST-405000"
INTERNAL_ERROR = "CST-500000"

SESSION_INVALID_MESSAGE = "Session has expired or is invalid. Please reconnect."
TOKEN_PARAMETER_NAMES = ("sessiontoken", "__sessiontoken")
# Parameter and result types as Campaign schemas spell them.
SCALAR_TYPES = {"string": "xsd:string", "boolean": "xsd:boolean", "byte": "xsd:byte", "long": "xsd:int",
                "int64": "xsd:long", "datetime": "xsd:dateTime"}
ELEMENT_TYPES = ("DOMDocument", "DOMElement")


class SoapFault(Exception):
    """A fault decided by the SOAP layer itself: `faultstring` is "<code> <message>"."""

    def __init__(self, code: str, message: str, *, detail: str = "", client: bool = True, status: int = 500,
                 retry_after: int | None = None):
        super().__init__(f"{code} {message}")
        self.retry_after = retry_after
        self.code = code
        self.message = message
        self.detail = detail
        self.client = client
        self.status = status

    @property
    def faultstring(self) -> str:
        return f"{self.code} {self.message}"


# --- Registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SoapMethod:
    service: str  # "xtk:session"
    name: str  # "Ingest"
    handler: Callable[["SoapCall"], Sequence[Any] | None]
    params: tuple[tuple[str, str], ...]  # (name, type) of the inputs after the session token
    returns: tuple[tuple[str, str], ...]  # (response element name, type), written in this order
    response_ns: str
    anonymous: bool
    aliases: tuple[str, ...]

    @property
    def services(self) -> tuple[str, ...]:
        return (self.service, *self.aliases)


_REGISTRY: dict[tuple[str, str], SoapMethod] = {}


def soap_method(service: str, name: str, *, params=(), returns=(), aliases=(), response_ns: str | None = None,
                anonymous: bool = False):
    """Register `handler(call) -> outputs` as the Campaign method `service#name`.

    `aliases` are further URNs the method answers to (`xtk:persist|xtk:session` is how the SDK
    calls methods of an interface a schema implements). `returns` declares the response elements;
    the handler returns their values in that order. Only `anonymous` methods run without a session.
    """

    def register(handler):
        method = SoapMethod(
            service=service, name=name, handler=handler, params=tuple(params), returns=tuple(returns),
            response_ns=response_ns or f"urn:{service}", anonymous=anonymous, aliases=tuple(aliases),
        )
        for urn in method.services:
            existing = _REGISTRY.get((urn, name))
            if existing is not None and _qualname(existing.handler) != _qualname(handler):
                raise ImproperlyConfigured(
                    f"SOAP method {urn}#{name} is declared twice: {_qualname(existing.handler)} and {_qualname(handler)}."
                )
            _REGISTRY[(urn, name)] = method
        return handler

    return register


def _qualname(function) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def find_method(service: str, name: str) -> SoapMethod:
    method = _REGISTRY.get((service, name))
    if method is None:
        raise SoapFault(UNKNOWN_METHOD, f"The method '{name}' is not defined in SOAP service '{service}'.")
    return method


def service_methods(service: str) -> list[SoapMethod]:
    """Methods callable with `urn:<service>`, in declaration order, each once."""
    seen, methods = set(), []
    for (urn, _), method in _REGISTRY.items():
        if urn == service and method.name not in seen:
            seen.add(method.name)
            methods.append(method)
    return methods


# --- Request ---------------------------------------------------------------------------------

def _local(tag) -> tuple[str, str]:
    """(namespace, local name) of an lxml tag."""
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _children(element) -> list:
    return [child for child in element if isinstance(child.tag, str)]


@dataclass(frozen=True)
class Envelope:
    service: str  # the method element's namespace without "urn:", e.g. "xtk:persist|xtk:session"
    method: str
    params: tuple  # lxml elements after the session token
    session_token: str  # first body parameter
    header_session_token: str  # SOAP header <Cookie>__sessiontoken=...</Cookie>
    header_security_token: str  # SOAP header <X-Security-Token>

    @property
    def called_service(self) -> str:
        # "xtk:persist|xtk:session" is xtk:session's implementation of xtk:persist: name the schema.
        return self.service.rpartition("|")[2]


def _cookie_session_token(text: str) -> str:
    for part in (text or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "__sessiontoken":
            return value.strip()
    return ""


def parse_envelope(data: bytes, *, soap_action: str = "") -> Envelope:
    """Read the method, its parameters and the tokens out of a SOAP request body.

    Raises InvalidXml / TooLarge from the hardened parser and SoapFault when the document is XML
    but not a SOAP call.
    """
    root = parse_xml(data, max_bytes=settings.INGEST_MAX_BYTES, what="SOAP request")
    namespace, local = _local(root.tag)
    if local != "Envelope" or namespace not in (SOAP_ENV, SOAP12_ENV):
        raise SoapFault(NOT_SOAP, "The request is not a SOAP envelope.",
                        detail=f"The root element is <{local}> in namespace '{namespace}'; expected "
                               f"<SOAP-ENV:Envelope xmlns:SOAP-ENV='{SOAP_ENV}'>.")
    parts = {_local(child.tag)[1]: child for child in _children(root) if _local(child.tag)[0] == namespace}
    body = parts.get("Body")
    if body is None:
        raise SoapFault(NOT_SOAP, "The SOAP envelope has no Body.",
                        detail="Put the method element inside <SOAP-ENV:Body>.")
    calls = _children(body)
    if not calls:
        raise SoapFault(NOT_SOAP, "The SOAP body has no method element.",
                        detail="The body must hold one element named after the method, e.g. "
                               "<m:Ingest xmlns:m='urn:xtk:session'>.")
    call = calls[0]
    method_ns, method = _local(call.tag)
    if not method_ns:
        # Raw clients sometimes leave the method unqualified; the SOAPAction header still names the service.
        method_ns = "urn:" + soap_action.strip().strip('"').partition("#")[0]
    service = method_ns[len("urn:"):] if method_ns.startswith("urn:") else method_ns

    params = _children(call)
    session_token = ""
    if params and _local(params[0].tag)[1] in TOKEN_PARAMETER_NAMES:
        session_token = (params[0].text or "").strip()
        params = params[1:]

    header_session_token = header_security_token = ""
    header = parts.get("Header")
    if header is not None:
        for child in _children(header):
            name = _local(child.tag)[1]
            if name == "Cookie":
                header_session_token = _cookie_session_token(child.text)
            elif name == "X-Security-Token":
                header_security_token = (child.text or "").strip()
    return Envelope(service=service, method=method, params=tuple(params), session_token=session_token,
                    header_session_token=header_session_token, header_security_token=header_security_token)


@dataclass
class SoapCall:
    """One call as a handler sees it: the parameters, the authenticated user and the request."""

    method: SoapMethod
    envelope: Envelope
    request: HttpRequest
    user: Any = None
    session: Any = None  # the SoapSession the call came with, None for Bearer or anonymous calls
    _by_name: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_name = {_local(p.tag)[1]: p for p in self.envelope.params}

    def arg(self, name: str, *aliases: str):
        """The parameter element `name` (or an alias), else the one at its declared position, else None.

        Campaign matches parameters by position and clients name them differently (`login` in the
        SDK, `strLogin` in Adobe's examples), so a name is a hint and the position decides.
        """
        for candidate in (name, *aliases):
            if candidate in self._by_name:
                return self._by_name[candidate]
        position = next((i for i, (declared, _) in enumerate(self.method.params) if declared in (name, *aliases)), None)
        if position is not None and position < len(self.envelope.params):
            return self.envelope.params[position]
        return None

    def text(self, name: str, *aliases: str) -> str:
        element = self.arg(name, *aliases)
        return "" if element is None else (element.text or "").strip()

    def document(self, name: str = "doc", *aliases: str):
        """The root element of a DOMDocument parameter (`doc`, `domDoc`, or the first holding an element)."""
        element = self.arg(name, *aliases)
        if element is None or not _children(element):
            element = next((p for p in self.envelope.params if _children(p)), None)
        if element is None:
            raise InvalidInput(
                f"The method {self.method.name} needs an XML document parameter.",
                [Problem(f"add <{name}> holding the record element, e.g. <{name}><sampleTableStg "
                         f"xtkschema=\"dem:sampleTableStg\" .../></{name}>", attribute=name)],
            )
        return _children(element)[0]


# --- Authentication --------------------------------------------------------------------------

def api_token_user(key: str):
    """The active user of an API token, or None: what every bearer logon mode checks."""
    from apitokens.services import api_token_user as user_of_token

    return user_of_token(key=key) if key.strip() else None


def _bearer_user(request: HttpRequest):
    scheme, _, key = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not key.strip():
        return None, False
    return api_token_user(key), True


def authenticate_call(request: HttpRequest, envelope: Envelope):
    """(user, session) of a call, or SoapFault XSV-350008 / CST-401002.

    The session token comes from the first body parameter, else `Cookie: __sessiontoken`,
    `X-Session-Token` or the SOAP header's Cookie; the security token from `X-Security-Token` or the
    SOAP header. An empty session token with `Authorization: Bearer <API token>` is accepted too.
    """
    from staging.soap_sessions import security_token_matches, soap_session_find

    session_token = (
        envelope.session_token
        or _cookie_session_token(request.META.get("HTTP_COOKIE", ""))
        or request.META.get("HTTP_X_SESSION_TOKEN", "").strip()
        or envelope.header_session_token
    )
    if not session_token:
        user, sent = _bearer_user(request)
        if user is not None:
            return user, None
        detail = ("The API token of the Authorization header is unknown or its user is inactive." if sent else
                  "No session token was sent: call xtk:session#Logon, then pass pstrSessionToken as the first "
                  "parameter (<sessiontoken>) or in the X-Session-Token header, or send "
                  "'Authorization: Bearer <API token>'.")
        raise SoapFault(SESSION_INVALID, SESSION_INVALID_MESSAGE, detail=detail)
    if "/" in session_token:
        return _user_password_token_user(request, session_token), None
    session = soap_session_find(session_token=session_token)
    if session is None:
        raise SoapFault(SESSION_INVALID, SESSION_INVALID_MESSAGE,
                        detail="The session token is unknown, expired or revoked by Logoff; call Logon again.")
    security_token = request.META.get("HTTP_X_SECURITY_TOKEN", "").strip() or envelope.header_security_token
    if not security_token:
        if settings.SOAP_SESSION_TOKEN_ONLY:
            return session.user, session
        raise SoapFault(
            SECURITY_TOKEN_MISSING,
            "The security token is missing: send the pstrSecurityToken returned by Logon in the "
            "X-Security-Token header.",
            detail="Campaign pairs the session token with its security token; a <X-Security-Token> element "
                   "in the SOAP header works too.",
        )
    if not security_token_matches(session, security_token):
        raise SoapFault(SESSION_INVALID, SESSION_INVALID_MESSAGE,
                        detail="The security token does not belong to this session; use the pair Logon returned.")
    return session.user, session


def _user_password_token_user(request: HttpRequest, session_token: str):
    """The user of a "login/password" session token, checked as Logon checks a password.

    Campaign accepts this form only where the security zone sets allowUserPassword; here
    SOAP_ALLOW_USER_PASSWORD=1 does, and it is refused otherwise.
    """
    from staging.soap import logon_user

    if not settings.SOAP_ALLOW_USER_PASSWORD:
        raise SoapFault(
            USER_PASSWORD_REFUSED,
            "A login/password session token is not accepted on this server.",
            detail="Call xtk:session#Logon and use the session and security tokens it returns, or ask the "
                   "administrator to set SOAP_ALLOW_USER_PASSWORD=1 (Campaign's allowUserPassword).",
        )
    login, _, password = session_token.partition("/")
    try:
        return logon_user(request, login=login, password=password)
    except DomainError:
        raise SoapFault(SESSION_INVALID, SESSION_INVALID_MESSAGE,
                        detail="The login/password session token names no active user with that password.")


# --- Writing responses -----------------------------------------------------------------------

# Characters XML 1.0 cannot carry at all, even escaped (they could reach us from error messages).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", str(value)))


def xml_attr(value: str) -> str:
    """A single-quoted attribute value, the quoting Campaign's responses use."""
    return "'" + escape(_NOT_XML.sub("\ufffd", str(value)), {"'": "&apos;", "\n": "&#10;", "\r": "&#13;",
                                                            "\t": "&#9;"}) + "'"


def xml_element(tag: str, attributes: dict | None = None, content: str = "") -> str:
    """`<tag a='v'>content</tag>` (self-closed when empty); `content` is XML text already escaped."""
    attrs = "".join(f" {name}={xml_attr(value)}" for name, value in (attributes or {}).items() if value is not None)
    return f"<{tag}{attrs}>{content}</{tag}>" if content else f"<{tag}{attrs}/>"


def _envelope(body: str, *, ns: str | None) -> str:
    ns_decl = f" xmlns:ns={xml_attr(ns)}" if ns else ""
    return (
        "<?xml version='1.0'?><SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' "
        f"xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'{ns_decl} xmlns:SOAP-ENV='{SOAP_ENV}'>"
        f"<SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def _format_scalar(kind: str, value) -> str:
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "datetime" and isinstance(value, datetime):
        value = value.astimezone(dt_timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return "" if value is None else str(value)


def render_output(name: str, kind: str, value) -> str:
    if kind in ELEMENT_TYPES:
        return (f"<{name} xsi:type='ns:Element' SOAP-ENV:encodingStyle='{LITERAL_XML}'"
                + (f">{value}</{name}>" if value else "/>"))
    text = _format_scalar(kind, value)
    xsi_type = SCALAR_TYPES.get(kind, "xsd:string")
    return f"<{name} xsi:type='{xsi_type}'>{xml_text(text)}</{name}>" if text else f"<{name} xsi:type='{xsi_type}'/>"


def render_response(method: SoapMethod, values: Sequence[Any]) -> str:
    """The success envelope: `<MethodResponse xmlns='...'>` with one element per declared result.

    Element results are XML text the handler built (with xml_element); scalars are escaped here.
    """
    if len(values) != len(method.returns):
        raise ImproperlyConfigured(
            f"{method.service}#{method.name} returned {len(values)} value(s) for {len(method.returns)} declared."
        )
    outputs = "".join(render_output(name, kind, value) for (name, kind), value in zip(method.returns, values))
    body = (f"<{method.name}Response xmlns={xml_attr(method.response_ns)} "
            f"SOAP-ENV:encodingStyle='{SOAP_ENCODING}'>{outputs}</{method.name}Response>")
    return _envelope(body, ns=method.response_ns)


def render_fault(fault: SoapFault) -> str:
    detail = f"<detail xsi:type='xsd:string'>{xml_text(fault.detail)}</detail>" if fault.detail else ""
    body = (
        "<SOAP-ENV:Fault>"
        f"<faultcode>SOAP-ENV:{'Client' if fault.client else 'Server'}</faultcode>"
        f"<faultstring xsi:type='xsd:string'>{xml_text(fault.faultstring)}</faultstring>{detail}"
        "</SOAP-ENV:Fault>"
    )
    return _envelope(body, ns=None)


def _xml_response(text: str, *, status: int = 200) -> HttpResponse:
    return HttpResponse(text.encode("utf-8"), status=status, content_type=CONTENT_TYPE)


def fault_response(fault: SoapFault) -> HttpResponse:
    response = _xml_response(render_fault(fault), status=fault.status)
    if fault.status == 405:
        response["Allow"] = "POST"
    if fault.retry_after:
        response["Retry-After"] = str(fault.retry_after)
    return response


def _fault_from_error(error: DomainError) -> SoapFault:
    """A fault for a domain error raised before any method ran (body too large, not XML)."""
    return SoapFault(error.code, error.message, detail=error.detail if error.problems else "",
                     client=error.client_fault, status=413 if isinstance(error, TooLarge) else 500)


def _fault_from_method_error(envelope: Envelope, error: DomainError) -> SoapFault:
    # Campaign's shape: a generic SOP-330011 faultstring, the explanation in detail. Our code leads
    # the detail so a client can still tell "no permission" from "bad record".
    return SoapFault(
        METHOD_FAILED,
        f"Error while executing the method '{envelope.method}' of service '{envelope.called_service}'.",
        detail=f"{error.code} {error.detail}",
        client=error.client_fault,
        status=413 if isinstance(error, TooLarge) else 500,
        retry_after=getattr(error, "retry_after", None),
    )


# --- Views -----------------------------------------------------------------------------------

def _logged_fault(fault: SoapFault, envelope: Envelope | None) -> HttpResponse:
    """The fault's answer, logged here once: a client fault at WARNING on one line with its code, a
    server fault at ERROR with its trace.

    Campaign answers every fault with HTTP 500, which django.request would log again at ERROR as
    "Internal Server Error" with no code; the response is marked as logged so it does not.
    """
    where = f"{envelope.service}#{envelope.method}" if envelope else "(envelope not read)"
    # The first line of the detail leads with our code for method faults ("CST-401000 Invalid login ...").
    detail = fault.detail.splitlines()[0][:300] if fault.detail else ""
    if fault.client:
        logger.warning("SOAP %s client fault %s; %s", where, fault.faultstring, detail)
    else:
        logger.error("SOAP %s server fault %s; %s", where, fault.faultstring, detail,
                     exc_info=fault.__cause__ or fault)
    response = fault_response(fault)
    response._has_been_logged = True
    return response


@csrf_exempt
def soap_router(request: HttpRequest) -> HttpResponse:
    """POST /nl/jsp/soaprouter.jsp: one Campaign SOAP call. The `?soapAction=` query is ignored."""
    if request.method != "POST":
        return _logged_fault(SoapFault(POST_ONLY, "The SOAP router only accepts POST requests.",
                                       detail="POST a SOAP envelope to /nl/jsp/soaprouter.jsp.", status=405), None)
    envelope = None
    try:
        data = read_body(request, limit=settings.INGEST_MAX_BYTES)
        envelope = parse_envelope(data, soap_action=request.META.get("HTTP_SOAPACTION", ""))
        method = find_method(envelope.service, envelope.method)
        user, session = (None, None) if method.anonymous else authenticate_call(request, envelope)
        call = SoapCall(method=method, envelope=envelope, request=request, user=user, session=session)
        try:
            values = method.handler(call) or ()
        except DomainError as error:
            raise _fault_from_method_error(envelope, error) from error
        return _xml_response(render_response(method, values))
    except SoapFault as fault:
        return _logged_fault(fault, envelope)
    except DomainError as error:
        fault = _fault_from_error(error)
        fault.__cause__ = error
        return _logged_fault(fault, envelope)
    except Exception as error:
        fault = SoapFault(
            INTERNAL_ERROR, "Internal error while processing the SOAP call.",
            detail="The error was logged on the server; retry later or contact the administrator.", client=False,
        )
        fault.__cause__ = error
        return _logged_fault(fault, envelope)


_WSDL_TYPES = {"string": "s:string", "boolean": "s:boolean", "byte": "s:byte", "long": "s:int",
               "int64": "s:long", "datetime": "s:dateTime"}


def _wsdl_sequence(items, *, prefix: str) -> str:
    elements = "".join(
        f'<s:element maxOccurs="1" minOccurs="1" name="{name}" '
        f'type="{_WSDL_TYPES.get(kind, f"{prefix}:Element")}"/>' for name, kind in items
    )
    return f"<s:complexType><s:sequence>{elements}</s:sequence></s:complexType>"


def render_wsdl(service: str, methods: list[SoapMethod], *, location: str) -> str:
    """A document/literal WSDL 1.1 for `service`, in the shape of Campaign's schemawsdl.jsp.

    Each `<Method>Response` is declared in the namespace the answer really uses (the persist methods
    answer in urn:wpp:default, as Campaign does), each namespace in its own schema with its own
    `Element` type: answers type their DOM results `xsi:type='ns:Element'` with `ns` bound to that
    namespace, so a tool such as zeep finds the type where the answer points.
    """
    tns = f"urn:{service}"
    port = service.partition(":")[2] + "MethodsSoap"
    namespaces = [tns, *sorted({m.response_ns for m in methods} - {tns})]
    prefixes = {ns: "tns" if ns == tns else f"r{i}" for i, ns in enumerate(namespaces)}
    types: dict[str, list[str]] = {ns: [] for ns in namespaces}
    messages, operations, bindings = [], [], []
    for method in methods:
        n, out = method.name, prefixes[method.response_ns]
        types[tns].append(f'<s:element name="{n}">'
                          f'{_wsdl_sequence([("sessiontoken", "string"), *method.params], prefix="tns")}</s:element>')
        types[method.response_ns].append(
            f'<s:element name="{n}Response">{_wsdl_sequence(method.returns, prefix=out)}</s:element>')
        messages.append(f'<wsdl:message name="{n}In"><wsdl:part element="tns:{n}" name="parameters"/></wsdl:message>'
                        f'<wsdl:message name="{n}Out"><wsdl:part element="{out}:{n}Response" name="parameters"/>'
                        "</wsdl:message>")
        operations.append(f'<wsdl:operation name="{n}"><wsdl:input message="tns:{n}In"/>'
                          f'<wsdl:output message="tns:{n}Out"/></wsdl:operation>')
        literal = f'<soap:body encodingStyle="{SOAP_ENCODING}" use="literal"/>'
        bindings.append(f'<wsdl:operation name="{n}"><soap:operation soapAction="{service}#{n}" style="document"/>'
                        f"<wsdl:input>{literal}</wsdl:input><wsdl:output>{literal}</wsdl:output></wsdl:operation>")
    declarations = "".join(f' xmlns:{prefixes[ns]}={_quoted(ns)}' for ns in namespaces)
    schemas = "".join(
        f'<s:schema elementFormDefault="qualified" targetNamespace={_quoted(ns)}>'
        '<s:complexType name="Element"><s:sequence><s:any processContents="lax"/></s:sequence></s:complexType>'
        f'{"".join(types[ns])}</s:schema>'
        for ns in namespaces
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:s="http://www.w3.org/2001/XMLSchema"'
        f'{declarations} targetNamespace="{tns}">'
        f'<wsdl:types>{schemas}</wsdl:types>{"".join(messages)}'
        f'<wsdl:portType name="{port}">{"".join(operations)}</wsdl:portType>'
        f'<wsdl:binding name="{port}" type="tns:{port}">'
        '<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f'{"".join(bindings)}</wsdl:binding>'
        f'<wsdl:service name="{"".join(p[:1].upper() + p[1:] for p in service.split(":"))}">'
        f'<wsdl:port binding="tns:{port}" name="{port}"><soap:address location={_quoted(location)}/></wsdl:port>'
        "</wsdl:service></wsdl:definitions>"
    )


def _quoted(value: str) -> str:
    return '"' + escape(value, {'"': "&quot;"}) + '"'


def soap_wsdl(request: HttpRequest) -> HttpResponse:
    """GET /nl/jsp/schemawsdl.jsp?schema=xtk:session: the WSDL of a schema's SOAP methods."""
    service = request.GET.get("schema", "").strip()
    methods = service_methods(service) if service else []
    if not methods:
        known = sorted({m.service for m in _REGISTRY.values()})
        return HttpResponse(
            f"No SOAP methods are defined for schema '{service}'. Known schemas: {', '.join(known)}.\n",
            status=404, content_type="text/plain;charset=utf-8",
        )
    location = request.build_absolute_uri("/nl/jsp/soaprouter.jsp")
    return _xml_response(render_wsdl(service, methods, location=location))
