"""Discount rules as data (优惠规则): the rows a city administrator edits, compiled into a rule document.

Each table maps to a part of the rule document (docs/fares.md) and, where GTFS-Fares v2 has one, to
its file: RouteSet ~ networks/route_networks, Timeframe ~ timeframes, FareProduct ~ fare_products,
LegRule ~ fare_leg_rules, TransferRule ~ fare_transfer_rules. Caps and quotas have no GTFS file.
Rider categories and card schemes (fare media) are referred to by code; they are defined by the card
domain. Rows are a draft: terminals only see what ``services.fares_publish`` signed and published.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from citycard.terminal_kit.fares import document as D


def _choices(values, labels: dict) -> list[tuple[str, str]]:
    """The rule document's codes (terminal_kit, which knows no Django) with the labels people read."""
    missing = set(values) - set(labels)
    assert not missing, f"no label for {missing}"
    return [(v, labels[v]) for v in values]


SERVICE_CHOICES = _choices(
    D.SERVICES,
    {
        "bus": _("bus"),
        "metro": _("metro"),
        "ferry": _("ferry"),
        "taxi": _("taxi"),
        "bike": _("public bike"),
        "park": _("park"),
        "library": _("library"),
        "parking": _("parking"),
        "other": _("other"),
    },
)
CATEGORY_CHOICES = _choices(
    D.CATEGORIES,
    {
        "elderly": _("Elderly"),
        "student": _("Student"),
        "disabled": _("Disabled"),
        "veteran": _("Veteran"),
        "low_income": _("Low income"),
    },
)
MEDIA_CHOICES = [
    ("01", _("01 Social security / citizen card")),
    ("02", _("02 New resident card")),
    ("03", _("03 City pass card")),
    ("04", _("04 Electronic citizen code")),
]
PERIOD_CHOICES = _choices(D.PERIODS, {"day": _("per day"), "month": _("per month")})
DISTANCE_CHOICES = _choices(
    D.DISTANCES,
    {"km": _("kilometres"), "stations": _("stations"), "od": _("station to station (origin-destination)")},
)
RIDER_CHOICES = _choices(
    D.RIDERS, {"any": _("any card"), "local": _("local cards"), "visitor": _("visitors' cards")}
)
MEASURE_CHOICES = _choices(
    D.MEASURES,
    {"previous_tap": _("from the previous tap"), "first_tap": _("from the first tap")},
)
POLICY_CHOICES = _choices(
    D.POLICIES,
    {
        "host_rules": _("this city's rules"),
        "home_category": _("the home city's category"),
        "no_concession": _("no concession"),
    },
)


def _check_codes(values, allowed, field: str) -> None:
    """The row checks (``clean``) are the ones both the admin forms and the editing services run
    (``services.<entity>_create`` / ``_change``); publishing re-validates the whole document anyway."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValidationError(
            {
                field: gettext("unknown: %(unknown)s (known: %(known)s)")
                % {"unknown": ", ".join(unknown), "known": ", ".join(allowed)}
            }
        )


def _check_dates(row) -> None:
    if row.valid_from and row.valid_to and row.valid_from > row.valid_to:
        raise ValidationError({"valid_to": gettext("valid_to is before valid_from")})


def _check_not_negative(row, field: str) -> None:
    value = getattr(row, field)
    if value is not None and value < 0:
        raise ValidationError({field: gettext("a negative amount is refused (fares are never negative)")})


def _codes(max_length: int = 20, help_text: str = "", verbose_name: str | None = None) -> ArrayField:
    return ArrayField(
        models.CharField(max_length=max_length),
        default=list,
        blank=True,
        help_text=help_text,
        verbose_name=verbose_name,
    )


class RouteSet(models.Model):
    """Routes by name and by number range with exclusions, e.g. bus 1–499 except 315 (线路集合)."""

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    service = models.CharField(max_length=10, choices=SERVICE_CHOICES, blank=True, verbose_name=_("service"))
    # Route names as the feed or the administrator gave them, never cut: text[], not varchar(n)[] (Django
    # casts values to the column type, and a cast to varchar(n) cuts silently).
    routes = ArrayField(
        models.TextField(),
        default=list,
        blank=True,
        help_text=_("Route names, comma separated (e.g. 1,3,B1)."),
        verbose_name=_("routes"),
    )
    ranges = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("Number ranges, comma separated: 1-499, 600-699."),
        verbose_name=_("ranges"),
    )
    excluded = ArrayField(
        models.TextField(),
        default=list,
        blank=True,
        help_text=_("Routes excepted from the ranges, e.g. 315."),
        verbose_name=_("excluded"),
    )

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        for low, high in self.range_pairs():
            if low < 0 or low > high:
                raise ValidationError(
                    {
                        "ranges": gettext("%(ranges)r: write ranges as low-high, e.g. 1-499, 600-699")
                        % {"ranges": self.ranges}
                    }
                )
        if not self.routes and not self.ranges.strip():
            raise ValidationError(gettext("a route set needs routes or ranges"))

    def range_pairs(self) -> list[list[int]]:
        pairs = []
        for part in filter(None, (p.strip() for p in self.ranges.split(","))):
            low, _, high = part.partition("-")
            try:
                pairs.append([int(low), int(high or low)])
            except ValueError:
                pairs.append([-1, -1])  # refused by validation with the route set named
        return pairs

    class Meta:
        verbose_name = _("route set")
        verbose_name_plural = _("route sets")


class Timeframe(models.Model):
    """Weekday/weekend/peak windows (时段), like GTFS timeframes."""

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))

    def __str__(self) -> str:
        return self.code

    class Meta:
        verbose_name = _("timeframe")
        verbose_name_plural = _("timeframes")


class TimeframeWindow(models.Model):
    timeframe = models.ForeignKey(
        Timeframe, on_delete=models.CASCADE, related_name="windows", verbose_name=_("timeframe")
    )
    days = ArrayField(
        models.PositiveSmallIntegerField(),
        default=list,
        help_text=_("ISO weekdays: 1 = Monday … 7."),
        verbose_name=_("days"),
    )
    start = models.CharField(max_length=5, default="00:00", help_text=_("HH:MM"), verbose_name=_("start"))
    end = models.CharField(
        max_length=5,
        default="24:00",
        help_text=_("HH:MM, exclusive; 24:00 = end of day"),
        verbose_name=_("end"),
    )

    class Meta:
        verbose_name = _("timeframe window")
        verbose_name_plural = _("timeframe windows")
        ordering = ["timeframe_id", "start"]

    def clean(self) -> None:
        if not self.days or any(not 1 <= d <= 7 for d in self.days):
            raise ValidationError({"days": gettext("ISO weekdays 1 (Monday) to 7 (Sunday)")})
        if (
            D._minute(self.start) is None
            or D._minute(self.end) is None
            or D._minute(self.start) >= D._minute(self.end)
        ):
            raise ValidationError(
                gettext("start and end are HH:MM with start before end (end 24:00 at the latest)")
            )


class Quota(models.Model):
    """N rides a period under a rule (e.g. 30 free rides a month for the elderly)."""

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    period = models.CharField(max_length=5, choices=PERIOD_CHOICES, default="month", verbose_name=_("period"))
    rides = models.PositiveIntegerField(verbose_name=_("rides"))

    def __str__(self) -> str:
        return self.code

    class Meta:
        verbose_name = _("quota")
        verbose_name_plural = _("quotas")


class Stop(models.Model):
    """A station (车站, GTFS ``stops``): what a gate names as its entry or exit."""

    code = models.CharField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    lat = models.CharField(
        max_length=20,
        blank=True,
        help_text=_("decimal degrees, as GTFS stop_lat"),
        verbose_name=_("latitude"),
    )
    lon = models.CharField(
        max_length=20,
        blank=True,
        help_text=_("decimal degrees, as GTFS stop_lon"),
        verbose_name=_("longitude"),
    )

    class Meta:
        verbose_name = _("station")
        verbose_name_plural = _("stations")

    def __str__(self) -> str:
        return self.code


class Area(models.Model):
    """A fare zone (GTFS ``areas`` + ``stop_areas``): stations priced alike."""

    code = models.CharField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    stops = ArrayField(
        models.CharField(max_length=64),
        default=list,
        help_text=_("Station codes."),
        verbose_name=_("stations"),
    )

    class Meta:
        verbose_name = _("fare area")
        verbose_name_plural = _("fare areas")

    def __str__(self) -> str:
        return self.code


class Line(models.Model):
    """A line's stations in order with their distance from its first station (metres)."""

    code = models.CharField(max_length=255, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    service = models.CharField(
        max_length=10, choices=SERVICE_CHOICES, default="metro", verbose_name=_("service")
    )
    stops = models.JSONField(
        default=list,
        help_text=_('[["station code", metres], ...] in line order'),
        verbose_name=_("stations"),
    )

    class Meta:
        verbose_name = _("line")
        verbose_name_plural = _("lines")

    def __str__(self) -> str:
        return self.code


class StopJoin(models.Model):
    """Two platforms of one interchange inside the gates (GTFS ``fare_leg_join_rules`` by stop): a free
    in-system transfer."""

    from_stop = models.CharField(max_length=64, verbose_name=_("from station"))
    to_stop = models.CharField(max_length=64, verbose_name=_("to station"))

    class Meta:
        verbose_name = _("interchange join")
        verbose_name_plural = _("interchange joins")
        constraints = [models.UniqueConstraint(fields=["from_stop", "to_stop"], name="stop_join_unique")]


class FareTable(models.Model):
    """A distance fare table (里程计价表): rows of (up to N km or stations, fare in fen)."""

    code = models.CharField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    measure = models.CharField(
        max_length=8, choices=DISTANCE_CHOICES, default="km", verbose_name=_("measured in")
    )
    rows = models.JSONField(
        default=list, help_text=_("[[up to, amount_fen], ...] ascending"), verbose_name=_("rows")
    )
    beyond_every = models.PositiveIntegerField(
        default=0, help_text=_("0: the last row is the maximum"), verbose_name=_("beyond the table, every")
    )
    beyond_add_fen = models.PositiveIntegerField(default=0, verbose_name=_("beyond the table, add (fen)"))

    class Meta:
        verbose_name = _("distance fare table")
        verbose_name_plural = _("distance fare tables")

    def __str__(self) -> str:
        return self.code


class GateRule(models.Model):
    """Tap-in/tap-out rules of a gated service (进出站规则)."""

    service = models.CharField(
        max_length=10, choices=SERVICE_CHOICES, default="metro", unique=True, verbose_name=_("service")
    )
    entry_fen = models.PositiveIntegerField(default=0, verbose_name=_("charged at entry (fen)"))
    time_limit_minutes = models.PositiveIntegerField(default=240, verbose_name=_("time limit (minutes)"))
    incomplete_fen = models.PositiveIntegerField(verbose_name=_("fare without an exit (fen)"))
    no_entry_fen = models.PositiveIntegerField(verbose_name=_("fare without an entry (fen)"))
    same_station_minutes = models.PositiveIntegerField(
        default=0, verbose_name=_("same-station exit within (minutes)")
    )
    same_station_fen = models.PositiveIntegerField(default=0, verbose_name=_("same-station exit fare (fen)"))

    class Meta:
        verbose_name = _("gate rule")
        verbose_name_plural = _("gate rules")

    def __str__(self) -> str:
        return self.service


class GtfsSource(models.Model):
    """What the last GTFS-Fares v2 import said in its own words that the rule rows do not hold (route ids
    and long names, fare media and rider category rows, product ids shared by several leg rules, where
    networks were given): the export writes them back as they came. Replaced by every rule load."""

    names = models.JSONField(default=dict, verbose_name=_("names as imported"))
    imported_at = models.DateTimeField(auto_now_add=True, verbose_name=_("imported at"))

    class Meta:
        verbose_name = _("GTFS import source")
        verbose_name_plural = _("GTFS import sources")


class FareProduct(models.Model):
    """A base fare for a service's routes (票价): the highest priority product covering a route applies."""

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    service = models.CharField(
        max_length=10, choices=SERVICE_CHOICES, default="bus", verbose_name=_("service")
    )
    route_set = models.ForeignKey(
        RouteSet, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("route set")
    )
    amount_fen = models.BigIntegerField(
        help_text=_("Base fare in fen (分); 0 with a fare table."), verbose_name=_("amount (fen)")
    )
    priority = models.IntegerField(default=0, verbose_name=_("priority"))
    valid_from = models.DateField(null=True, blank=True, verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    from_area = models.ForeignKey(
        Area, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("from area")
    )
    to_area = models.ForeignKey(
        Area, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("to area")
    )
    fare_table = models.ForeignKey(
        FareTable, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("fare table")
    )

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        _check_not_negative(self, "amount_fen")
        _check_dates(self)

    class Meta:
        verbose_name = _("fare product")
        verbose_name_plural = _("fare products")


class LegRule(models.Model):
    """A discount on one ride (优惠规则): who, where, when, how much; the highest priority match wins."""

    class Kind(models.TextChoices):
        PERCENT = "percent", _("pay a percentage of the base fare (basis points: 9000 = 90%)")
        FIXED = "fixed", _("fixed fare in fen")
        FREE = "free", _("free")
        MINUS = "minus", _("fen off the base fare")

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    service = models.CharField(max_length=10, choices=SERVICE_CHOICES, blank=True, verbose_name=_("service"))
    route_set = models.ForeignKey(
        RouteSet, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("route set")
    )
    timeframe = models.ForeignKey(
        Timeframe, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("timeframe")
    )
    categories = _codes(
        verbose_name=_("categories"),
        help_text=_("Rider categories (any of): elderly, student, disabled, veteran, low_income."),
    )
    media = _codes(
        verbose_name=_("media"),
        help_text=_("Card schemes (any of): 01 main card, 02 new-resident, 03 city pass, 04 e-code."),
    )
    passes = _codes(verbose_name=_("passes"), help_text=_("Passes the card must carry, e.g. monthly."))
    riders = models.CharField(
        max_length=8,
        choices=RIDER_CHOICES,
        default="any",
        help_text=_("local cards, visitors, or any"),
        verbose_name=_("riders"),
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PERCENT, verbose_name=_("kind"))
    value = models.BigIntegerField(
        default=0, help_text=_("Basis points for percent, fen for fixed and minus."), verbose_name=_("value")
    )
    above_base = models.BooleanField(
        default=False, help_text=_("Allow a fare above the base fare."), verbose_name=_("above base")
    )
    priority = models.IntegerField(default=0, verbose_name=_("priority"))
    valid_from = models.DateField(null=True, blank=True, verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    quota = models.ForeignKey(Quota, null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("quota"))
    from_area = models.ForeignKey(
        Area, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("from area")
    )
    to_area = models.ForeignKey(
        Area, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("to area")
    )

    class Meta:
        verbose_name = _("leg rule")
        verbose_name_plural = _("leg rules")
        ordering = ["-priority", "code"]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        _check_codes(self.categories, D.CATEGORIES, "categories")
        _check_codes(self.media, D.MEDIA, "media")
        if self.kind != self.Kind.FREE and self.value < 0:
            raise ValidationError(
                {"value": gettext("a negative value is refused (fares are never negative)")}
            )
        if self.kind == self.Kind.PERCENT and self.value > 10000 and not self.above_base:
            raise ValidationError(
                {"value": gettext("more than 10000 basis points needs 'above base' ticked")}
            )
        _check_dates(self)


class TransferRule(models.Model):
    """A transfer discount (换乘优惠) with the GTFS-Fares v2 transfer types."""

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    from_service = models.CharField(
        max_length=10, choices=SERVICE_CHOICES, blank=True, verbose_name=_("from service")
    )
    from_route_set = models.ForeignKey(
        RouteSet,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("from route set"),
    )
    to_service = models.CharField(
        max_length=10, choices=SERVICE_CHOICES, blank=True, verbose_name=_("to service")
    )
    to_route_set = models.ForeignKey(
        RouteSet,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("to route set"),
    )
    within_minutes = models.PositiveIntegerField(
        default=90, null=True, blank=True, help_text=_("empty: no limit"), verbose_name=_("within minutes")
    )
    max_transfers = models.IntegerField(
        default=1, help_text=_("-1: unlimited"), verbose_name=_("max transfers")
    )
    transfer_type = models.PositiveSmallIntegerField(
        choices=[(0, _("0: A + AB")), (1, _("1: A + AB + B")), (2, _("2: AB"))],
        default=1,
        verbose_name=_("transfer type"),
    )
    amount_fen = models.BigIntegerField(
        default=0,
        help_text=_("AB; for type 1 a negative amount is a discount."),
        verbose_name=_("amount (fen)"),
    )
    measure = models.CharField(
        max_length=12, choices=MEASURE_CHOICES, default="previous_tap", verbose_name=_("measure")
    )
    priority = models.IntegerField(default=0, verbose_name=_("priority"))

    def __str__(self) -> str:
        return self.code

    class Meta:
        verbose_name = _("transfer rule")
        verbose_name_plural = _("transfer rules")


class Cap(models.Model):
    """Fare capping (封顶): a card pays at most this much a day or a month."""

    code = models.SlugField(max_length=64, unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, blank=True, verbose_name=_("name"))
    period = models.CharField(max_length=5, choices=PERIOD_CHOICES, default="day", verbose_name=_("period"))
    amount_fen = models.BigIntegerField(verbose_name=_("amount (fen)"))
    service = models.CharField(max_length=10, choices=SERVICE_CHOICES, blank=True, verbose_name=_("service"))
    categories = _codes(verbose_name=_("categories"))
    media = _codes(verbose_name=_("media"))

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        _check_not_negative(self, "amount_fen")
        _check_codes(self.categories, D.CATEGORIES, "categories")
        _check_codes(self.media, D.MEDIA, "media")

    class Meta:
        verbose_name = _("cap")
        verbose_name_plural = _("caps")


class VisitorPolicy(models.Model):
    """What visitors' cards get here (外地卡): per home tenant, per roaming network, or by default."""

    class Scope(models.TextChoices):
        DEFAULT = "default", _("Default")
        NETWORK = "network", _("Roaming network")
        TENANT = "tenant", _("Home tenant")

    scope = models.CharField(max_length=8, choices=Scope.choices, verbose_name=_("scope"))
    key = models.CharField(
        max_length=20,
        blank=True,
        help_text=_("network code (yrd, gba) or the home tenant's division code"),
        verbose_name=_("key"),
    )
    policy = models.CharField(max_length=14, choices=POLICY_CHOICES, verbose_name=_("policy"))

    class Meta:
        verbose_name = _("visitor policy")
        verbose_name_plural = _("visitor policies")
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="visitor_policy_unique")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key or '*'} -> {self.policy}"

    def clean(self) -> None:
        if self.scope == self.Scope.TENANT and not (len(self.key) == 6 and self.key.isdigit()):
            raise ValidationError({"key": gettext("a home tenant is named by its 6-digit division code")})
        if self.scope == self.Scope.NETWORK and not self.key:
            raise ValidationError({"key": gettext("name the network (yrd, gba)")})
        if self.scope == self.Scope.DEFAULT and self.key:
            raise ValidationError({"key": gettext("the default policy has no key")})
