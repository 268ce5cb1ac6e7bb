/* The console's and the dashboards' charts, drawn with Apache ECharts (vendor/echarts, served from the
 * project's own static files). Each <div class="chart" data-chart="ID"> is drawn from the JSON of
 * <script id="ID" type="application/json"> (Django's json_script): the data stays integer fen, turned into
 * yuan only in axes and tooltips. The drawn charts are window.citycardCharts[ID] (the browser test reads
 * their data points there).
 *
 * Specs:
 *   {"kind": "series", "x": [...], "axes": [{"name": "...", "unit": "count|fen|percent"}, ...],
 *    "series": [{"name": "...", "type": "bar|line", "axis": 0, "stack": "...", "data": [...]}]}
 *   {"kind": "heatmap", "x": [acquirers], "y": [issuers], "unit": "fen",
 *    "data": [[x index, y index, fen, records], ...]}
 */
(function () {
  "use strict";

  function yuan(fen, compact) {
    var sign = fen < 0 ? "-" : "";
    var abs = Math.abs(Math.round(fen));
    if (compact && abs >= 1000000) { // ¥10,000 and more: 万 on the axis
      return sign + "¥" + (abs / 1000000).toLocaleString("en-US", {maximumFractionDigits: 1}) + "万";
    }
    var whole = Math.floor(abs / 100);
    var cents = abs % 100;
    // Axes (compact) drop the cents of whole yuan only; a label never rounds ¥2.50 to ¥2.
    var tail = compact && cents === 0 ? "" : "." + (cents < 10 ? "0" : "") + cents;
    return sign + "¥" + whole.toLocaleString("en-US") + tail;
  }

  function show(unit, value, compact) {
    if (value === null || value === undefined || value === "-") { return "—"; }
    if (unit === "fen") { return yuan(value, compact); }
    if (unit === "percent") { return Number(value).toFixed(2) + "%"; }
    return Number(value).toLocaleString("en-US");
  }

  function seriesOption(spec) {
    var axes = spec.axes || [{name: "", unit: "count"}];
    return {
      animation: false,
      tooltip: {
        trigger: "axis",
        formatter: function (items) {
          var lines = [items.length ? items[0].axisValueLabel : ""];
          items.forEach(function (item) {
            var unit = axes[(spec.series[item.seriesIndex].axis || 0)].unit;
            lines.push(item.marker + item.seriesName + " " + show(unit, item.value));
          });
          return lines.join("<br>");
        }
      },
      legend: {type: "scroll", top: 0},
      grid: {left: 70, right: axes.length > 1 ? 80 : 30, top: 60, bottom: 40},
      xAxis: {type: "category", data: spec.x},
      yAxis: axes.map(function (axis) {
        return {
          type: "value", name: axis.name, nameTextStyle: {align: "center"},
          axisLabel: {formatter: function (v) { return show(axis.unit, v, true); }}
        };
      }),
      series: spec.series.map(function (s) {
        return {name: s.name, type: s.type || "line", yAxisIndex: s.axis || 0, stack: s.stack,
                data: s.data, connectNulls: true, showSymbol: spec.x.length < 40};
      })
    };
  }

  function heatmapOption(spec) {
    // A national network's matrix has ~90,000 points: no spread into Math.max's arguments, axis labels
    // thinned, sliders to zoom into a block of issuers and acquirers, drawn progressively.
    var max = 0;
    for (var i = 0; i < spec.data.length; i++) { if (spec.data[i][2] > max) { max = spec.data[i][2]; } }
    var large = spec.x.length > 30 || spec.y.length > 30;
    return {
      animation: false,
      tooltip: {
        formatter: function (item) {
          var d = item.data;
          return spec.y[d[1]] + " → " + spec.x[d[0]] + "<br>" + show("fen", d[2]) + " · " +
            show("count", d[3]) + " " + (spec.records_label || "");
        }
      },
      grid: {left: 100, right: large ? 150 : 110, top: 30, bottom: large ? 80 : 50},
      xAxis: {type: "category", data: spec.x, name: spec.x_name, nameLocation: "middle", nameGap: 30,
              splitArea: {show: !large}, axisLabel: {interval: large ? "auto" : 0, rotate: large ? 90 : 0}},
      // Issuers top to bottom in the grid's order, as in the matrix table above.
      yAxis: {type: "category", data: spec.y, name: spec.y_name, inverse: true, splitArea: {show: !large},
              axisLabel: {interval: large ? "auto" : 0}},
      dataZoom: large ? [{type: "slider", xAxisIndex: 0, bottom: 5}, {type: "slider", yAxisIndex: 0, right: 90},
                         {type: "inside", xAxisIndex: 0}, {type: "inside", yAxisIndex: 0}] : [],
      // Coloured by the amount (the third value of a point; the fourth is the records).
      visualMap: {min: 0, max: Math.max(max, 1), dimension: 2, calculable: true, orient: "vertical", right: 0,
                  top: "middle", inRange: {color: ["#eef4ff", "#7aa7e6", "#1d4e9e"]},
                  formatter: function (v) { return show("fen", v, true); }},
      series: [{type: "heatmap", data: spec.data, progressive: large ? 10000 : 400,
                label: {show: spec.data.length <= 64,
                        formatter: function (item) { return show("fen", item.data[2]); }}}]
    };
  }

  var builders = {series: seriesOption, heatmap: heatmapOption};
  var drawn = {};
  window.citycardCharts = drawn;

  function draw() {
    if (typeof echarts === "undefined") { return; }
    document.querySelectorAll("div.chart[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart"));
      if (!source) { return; }
      var spec = JSON.parse(source.textContent);
      var build = builders[spec.kind];
      if (!build) { return; }
      var chart = echarts.init(el, null, {renderer: "canvas"});
      chart.setOption(build(spec));
      drawn[el.id] = chart;
    });
  }

  window.addEventListener("resize", function () {
    Object.keys(drawn).forEach(function (id) { drawn[id].resize(); });
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
}());
