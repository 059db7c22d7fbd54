"""Authorization matrix rows for datasets: the owner's pages, the catalogue, and staff reading any dataset."""
from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_dataset

SIGNED_IN_OK = same_for_signed_in("login", "ok")
# Another user's private dataset: staff who see every job (admin) may read it; others get a 404.
STAFF_READ = {"anonymous": "login", "user": 404, "support": 404, "admin": "ok"}
OWNER_ONLY = same_for_signed_in("login", 404)


def routes(world: World) -> list[Route]:
    theirs = make_dataset(world.other)
    base = f"/datasets/{theirs.id}"
    return [
        Route("GET", "/datasets", "/datasets", SIGNED_IN_OK),
        Route("GET", "/datasets/new", "/datasets/new", SIGNED_IN_OK),
        # An empty upload is refused with its errors.
        Route("POST", "/datasets/new", "/datasets/new", same_for_signed_in("login", 422)),
        Route("GET", "/datasets/public", "/datasets/public?q=chat", SIGNED_IN_OK),
        Route("GET", "/datasets/<int:dataset_id>", base, STAFF_READ),
        Route("GET", "/datasets/<int:dataset_id>/download", f"{base}/download", STAFF_READ),
        Route("GET", "/datasets/<int:dataset_id>/delete", f"{base}/delete", OWNER_ONLY),
        Route("POST", "/datasets/<int:dataset_id>/delete", f"{base}/delete", OWNER_ONLY),
    ]
