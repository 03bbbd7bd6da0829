"""The product's URLs plus `POST /bench/trivial/`, a view doing as little as Django allows."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from campaignsite.urls import urlpatterns as product_urlpatterns

TRIVIAL_PATH = "/bench/trivial/"


@csrf_exempt
def trivial(request):
    # Reads the body like the SOAP router does, so both pay for receiving the same request.
    request.read()
    return HttpResponse(b"<ok/>", content_type="text/xml;charset=utf-8")


urlpatterns = [path(TRIVIAL_PATH.strip("/") + "/", trivial, name="bench-trivial"), *product_urlpatterns]
