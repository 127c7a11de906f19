// Helpers of the wsmon dashboards: one per panel kind, the variables, the link bar and the grid.
// Grafana Classic dashboard JSON (imported and file-provisioned by Grafana 9 to 13), flat panels.
//
// Every panel and target reads the `datasource` variable, so the same JSON works provisioned (the
// provisioning file pins the data source's uid) and imported by hand (the user picks one). Every
// wsmon query selects `lib.sel`: the `job` variable and the `instance` variable, a multi-select,
// matched as a regular expression; a query sums over the instances it matched, so several of them
// add up instead of one being picked.
{
  sel:: 'job="$job", instance=~"$instance"',
  datasource:: { type: 'prometheus', uid: '${datasource}' },
  schemaVersion:: 39,

  // The alerting mixin with the build's arguments (configured.libsonnet), plus what a dashboard
  // reads of it: `alert(key)`, the thresholds of an indicator as steps, and `recorded(key)`, its
  // recording rule for the selected job and instances (one series per instance, as the alert
  // judges it).
  mixin(catalogue, thresholds, overrides):: (import 'configured.libsonnet')(catalogue, thresholds, overrides) + {
    alert(key):: $.alertThresholds(thresholds, key),
    recorded(key):: '%s{%s}' % [self.indicatorRules[key].record, $.sel],
  },

  // -- PromQL over the selected instances ---------------------------------------------------------

  local aggregate(op, by) = if by == '' then op else '%s by (%s)' % [op, by],
  local sumBy(by) = aggregate('sum', by),
  local selector(matchers) = if matchers == '' then $.sel else $.sel + ', ' + matchers,

  local shifted(offset) = if offset == '' then '' else ' offset ' + offset,

  // Per second, summed over the selected instances (and grouped `by` some labels); `offset` looks
  // that long back (week over week).
  rate(metric, by='', matchers='', offset='')::
    '%s (rate(%s{%s}[$__rate_interval]%s))' % [sumBy(by), metric, selector(matchers), shifted(offset)],
  // The rate of a counter whose series appear only once it first counts (client errors, by
  // reason): 0 wherever the server is scraped, rather than no data.
  rateOrZero(metric)::
    '(%s or 0 * %s)' % [$.rate(metric), $.rate('wsmon_messages_received_total')],
  // Over `window`: `$__rate_interval` per point, `$__range` for the whole range, `1d` per day.
  increase(metric, window, by='', matchers='', offset='')::
    '%s (increase(%s{%s}[%s]%s))' % [sumBy(by), metric, selector(matchers), window, shifted(offset)],
  // A gauge summed over the selected instances.
  total(metric, by='', matchers='', offset='')::
    '%s (%s{%s}%s)' % [sumBy(by), metric, selector(matchers), shifted(offset)],
  // A gauge's highest or lowest over the selected instances (and grouped `by` some labels), for
  // figures that do not add up: a probe's pass (1) or fail (0), its duration.
  max(metric, by='', matchers='')::
    '%s (%s{%s})' % [aggregate('max', by), metric, selector(matchers)],
  min(metric, by='', matchers='')::
    '%s (%s{%s})' % [aggregate('min', by), metric, selector(matchers)],
  // A histogram's quantile over the selected instances' buckets added up (not an average of
  // per-instance quantiles, which means nothing).
  // `q` as text ('0.99'): Jsonnet would print the number 0.99 as 0.98999999999999999.
  quantile(q, histogram, by=''):: 'histogram_quantile(%s, %s)' % [q, $.rate(histogram + '_bucket', if by == '' then 'le' else by + ', le')],
  // A share, or nothing (rather than NaN or +Inf) where the denominator is 0, as in the rules.
  ratio(numerator, denominator):: '%s / (%s > 0)' % [numerator, denominator],
  // Pool utilisation of the selected instances together: open connections / capacity.
  utilisation:: $.ratio($.total('wsmon_connections_active'), $.total('wsmon_pool_capacity')),
  // A histogram's mean; nothing where nothing was observed.
  mean(histogram, by='')::
    $.ratio($.rate(histogram + '_sum', by), $.rate(histogram + '_count', by)),

  // A query. Range queries unless `instant` (tables and bar gauges show the latest value).
  target(expr, legend='', instant=false, format='time_series', interval=''):: {
    datasource: $.datasource,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
    [if interval != '' then 'interval']: interval,
  },

  // -- thresholds ---------------------------------------------------------------------------------

  // The colour of a range of values: that of the worst severity whose alert fires there.
  local worst(firing) =
    if std.member([e.severity for e in firing], 'critical') then 'red'
    else if firing != [] then 'yellow'
    else 'green',
  local below(e) = e.condition == '<' || e.condition == '<=',

  // The enabled alerts of thresholds.yaml on indicator `key`, as Grafana threshold steps: each
  // step's colour is the worst severity that fires from its value up to the next step, so a
  // "greater than" alert turns the colour at its value and a "less than" one (success rate) below
  // it. `note` says so in the panel's description; tests find the indicator by its wording.
  alertThresholds(thresholds, key):: {
    local enabled = [t { number:: std.parseJson(t.value) } for t in thresholds if t.metric == key && t.enabled],
    local values = std.set([e.number for e in enabled]),
    local firing(v) = [e for e in enabled if (below(e) && e.number > v) || (!below(e) && e.number <= v)],
    steps: [{ color: worst([e for e in enabled if below(e)]), value: null }]
           + [{ color: worst(firing(v)), value: v } for v in values],
    note: if enabled == [] then
      ' No alert on %s is enabled in thresholds.yaml.' % key
    else
      ' Thresholds: the %s alerts of thresholds.yaml (%s).' % [
        key,
        std.join(', ', ['%s %s %s %s' % [e.name, e.condition, e.display, e.severity] for e in enabled]),
      ],
  },

  // Colour steps for a figure no alert judges (a state, a count that should be 0): green, then
  // from each [value, colour] of `from` (ascending) up, that colour.
  colours(from):: {
    steps: [{ color: 'green', value: null }] + [{ color: step[1], value: step[0] } for step in from],
    note: '',
  },

  // -- panels -------------------------------------------------------------------------------------

  // What every panel kind shares. `w` and `h` are its size on the 24-column grid; `dashboard`
  // places it. `steps` (alertThresholds or colours) colour the panel and, on a time
  // series, are drawn as dashed lines.
  local panel(type, title, description, unit, targets, w, h, steps) = {
    w:: w,
    h:: h,
    type: type,
    title: title,
    description: description + (if steps == null then '' else steps.note),
    datasource: $.datasource,
    targets: [targets[i] { refId: std.char(std.codepoint('A') + i) } for i in std.range(0, std.length(targets) - 1)],
    fieldConfig: {
      defaults: {
        unit: unit,
        mappings: [],
        color: { mode: 'thresholds' },
        thresholds: {
          mode: 'absolute',
          steps: if steps == null then [{ color: 'green', value: null }] else steps.steps,
        },
      },
      overrides: [],
    },
  },
  local reduceLast = { calcs: ['lastNotNull'], fields: '', values: false },

  // One figure, coloured by its thresholds (or by `mappings`, for a state).
  stat(title, description, unit, targets, steps=null, mappings=[], colorMode='value', w=6, h=4)::
    panel('stat', title, description, unit, targets, w, h, steps) {
      fieldConfig+: { defaults+: { mappings: mappings } },
      options: {
        colorMode: colorMode,
        graphMode: 'area',
        justifyMode: 'auto',
        orientation: 'auto',
        reduceOptions: reduceLast,
        textMode: 'auto',
      },
    },

  // Lines over time, from 0 up unless `min` is null (a success rate lives between 98 and 100 %).
  timeseries(title, description, unit, targets, steps=null, stack=false, min=0, w=12, h=8)::
    panel('timeseries', title, description, unit, targets, w, h, steps) {
      fieldConfig+: {
        defaults+: {
          color: { mode: 'palette-classic' },
          [if min != null then 'min']: min,
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: if stack then 30 else 10,
            showPoints: 'never',
            spanNulls: false,
            stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
            thresholdsStyle: { mode: if steps == null then 'off' else 'dashed' },
          },
        },
      },
      options: {
        legend: { displayMode: 'list', placement: 'bottom', showLegend: true, calcs: [] },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },

  // The latest value of each series side by side (per worker, per type).
  bargauge(title, description, unit, targets, w=12, h=8)::
    panel('bargauge', title, description, unit, targets, w, h, null) {
      fieldConfig+: { defaults+: { min: 0, color: { mode: 'palette-classic' } } },
      options: {
        displayMode: 'gradient',
        orientation: 'horizontal',
        reduceOptions: reduceLast,
        showUnfilled: true,
        valueMode: 'color',
      },
    },

  // A Prometheus histogram's buckets over time: the target must be `sum by (le) (increase(...))`.
  heatmap(title, description, yUnit, targets, w=12, h=8)::
    panel('heatmap', title, description, 'short', [t { format: 'heatmap' } for t in targets], w, h, null) {
      options: {
        calculate: false,
        cellGap: 1,
        color: { mode: 'scheme', scheme: 'Oranges', scale: 'exponential', exponent: 0.5, fill: 'dark-orange', steps: 64, reverse: false },
        filterValues: { le: 1e-9 },
        rowsFrame: { layout: 'auto' },
        tooltip: { mode: 'single', yHistogram: false, showColorScale: false },
        legend: { show: true },
        yAxis: { axisPlacement: 'left', unit: yUnit, reverse: false },
      },
    },

  // The current series as rows, one column per label (`hide`: columns left out).
  table(title, description, unit, targets, hide=[], w=24, h=8)::
    panel('table', title, description, unit, [t { instant: true, range: false, format: 'table' } for t in targets], w, h, null) {
      options: { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: '' } },
      transformations: [{ id: 'organize', options: { excludeByName: { [name]: true for name in hide } } }],
    },

  // Markdown: no query, no data source.
  text(title, description, content, w=24, h=8):: {
    w:: w,
    h:: h,
    type: 'text',
    title: title,
    description: description,
    options: { mode: 'markdown', content: content, code: { language: 'plaintext', showLineNumbers: false, showMiniMap: false } },
  },

  // -- the dashboard ------------------------------------------------------------------------------

  local variables(c) = [
    {
      type: 'datasource',
      name: 'datasource',
      label: 'Data source',
      query: 'prometheus',
      // The uid the provisioning example and the alerts' dashboard links use; Grafana falls back
      // to its default Prometheus when there is none of that uid.
      current: { selected: false, text: c.datasource, value: c.datasource },
      hide: 0,
      refresh: 1,
      regex: '',
      options: [],
    },
    {
      type: 'query',
      name: 'job',
      label: 'Job',
      datasource: $.datasource,
      query: 'label_values(wsmon_build_info, job)',
      definition: 'label_values(wsmon_build_info, job)',
      current: { selected: false, text: c.dashboardJob, value: c.dashboardJob },
      multi: false,
      includeAll: false,
      refresh: 2,
      sort: 1,
      hide: 0,
      regex: '',
      options: [],
    },
    {
      type: 'query',
      name: 'instance',
      label: 'Instance',
      datasource: $.datasource,
      query: 'label_values(wsmon_build_info{job="$job"}, instance)',
      definition: 'label_values(wsmon_build_info{job="$job"}, instance)',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      multi: true,
      includeAll: true,
      // All as `.*` rather than a list of every instance: a query stays short however many.
      allValue: '.*',
      refresh: 2,
      sort: 1,
      hide: 0,
      regex: '',
      options: [],
    },
  ],

  // The tab bar: the same explicit links, in the guide's order, on every dashboard (a tag-filtered
  // `dashboards` link would list them alphabetically). They keep the time range and variables.
  local links(c) = [
    {
      title: tab.title,
      type: 'link',
      url: '/d/' + tab.uid,
      icon: 'dashboard',
      tooltip: 'wsmon / ' + tab.title,
      keepTime: true,
      includeVars: true,
      asDropdown: false,
      targetBlank: false,
      tags: [],
    }
    for tab in c.dashboardTabs
  ],

  local tab(c, uid) =
    local found = [t for t in c.dashboardTabs if t.uid == uid];
    assert std.length(found) == 1 : 'no tab of uid ' + uid + ' in dashboardTabs';
    found[0],

  // `rows`: arrays of panels, laid out left to right, each row below the tallest of the one
  // above; ids count up in that order, so a panel keeps its id until panels are added before it.
  dashboard(c, uid, description, rows, time='now-6h', refresh='30s')::
    local panels = std.flattenArrays([
      local y = std.foldl(function(sum, r) sum + std.foldl(std.max, [p.h for p in r], 0), rows[:r], 0);
      local xs = std.foldl(function(acc, p) acc + [acc[std.length(acc) - 1] + p.w], rows[r], [0]);
      assert xs[std.length(xs) - 1] <= 24 : '%s: row %d is %d columns wide' % [uid, r, xs[std.length(xs) - 1]];
      [rows[r][i] { gridPos: { x: xs[i], y: y, w: rows[r][i].w, h: rows[r][i].h } } for i in std.range(0, std.length(rows[r]) - 1)]
      for r in std.range(0, std.length(rows) - 1)
    ]);
    {
      uid: uid,
      title: 'wsmon / ' + tab(c, uid).title,
      description: description,
      tags: ['wsmon'],
      editable: true,
      graphTooltip: 1,  // a shared crosshair: the same moment on every panel
      fiscalYearStartMonth: 0,
      liveNow: false,
      refresh: refresh,
      schemaVersion: $.schemaVersion,
      time: { from: time, to: 'now' },
      timepicker: {},
      timezone: 'browser',
      version: 1,
      weekStart: '',
      links: links(c),
      templating: { list: variables(c) },
      annotations: {
        list: [{
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }],
      },
      panels: [panels[i] { id: i + 1 } for i in std.range(0, std.length(panels) - 1)],
    },
}
