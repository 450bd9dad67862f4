// The page side of the editor driver (driver.mjs): wires the real mrmd editor
// (the global `mrmd` of mrmd-electron's editor/mrmd.iife.js) as the
// mrmd-electron app does, and reads back what it holds and shows.
//
// Everything here is called through page.evaluate as `mrmdTest.<name>(...)`.
/* global mrmd */
(function () {
  'use strict'

  let editor = null
  let docPath = null
  let projectUrl = null // where the driver serves this tab's project root

  // As the app's setupAssetResolver (index.html): a relative image path is
  // resolved from the document's directory inside the project. The app turns
  // it into a file:// URL; this page asks the driver, which serves the project.
  function resolveAsset (url) {
    if (!url || !projectUrl) return url
    const dir = docPath.includes('/') ? docPath.slice(0, docPath.lastIndexOf('/')).split('/') : []
    let parts
    if (url.startsWith('/')) {
      parts = url.split('/').filter(Boolean)
    } else {
      parts = dir.slice()
      for (const part of url.split('/')) {
        if (part === '..') parts.pop()
        else if (part !== '.' && part !== '') parts.push(part)
      }
    }
    return projectUrl + parts.map(encodeURIComponent).join('/')
  }

  // As the app's setupExecutionAssetHandler, for direct runs: fetch the asset
  // from the runtime, save it under <project>/_assets/generated/, return the
  // path relative to the document. Saving is done by the driver (the app's
  // main process does it there too).
  async function saveAsset ({ url, runtimeUrl, eventType }) {
    if (eventType !== 'asset' || !url) return null
    const fetchUrl = runtimeUrl ? runtimeUrl.replace('/mrp/v1', '') + url : url
    return window.mrmdTestSaveAsset({ fetchUrl, filename: url.split('/').pop(), docPath })
  }

  async function open ({ syncUrl, doc, runtimeUrl, monitor, projectBase }) {
    docPath = doc
    projectUrl = projectBase
    const docs = mrmd.drive(syncUrl)
    editor = await docs.open(doc, '#editor', {
      cellControls: { enabled: true, buttons: { run: true, stop: true, clear: true } }
    })
    editor.connectRuntime('python', runtimeUrl)
    if (monitor) {
      editor.execution.enableMonitorMode({ ydoc: editor.ydoc, runtimeUrl, awareness: editor.awareness })
    } else if (projectBase) {
      editor.execution.assetHandler = saveAsset
    }
    if (projectBase) {
      editor.view.dispatch({
        effects: mrmd.codemirror.StateEffect.appendConfig.of(mrmd.assetResolverFacet.of(resolveAsset))
      })
    }
    editor.createCollaboratorList(document.getElementById('collaborators'))
    window.editor = editor // for a person debugging the page
    return { clientId: editor.ydoc.clientID }
  }

  function imagesIn (el) {
    return Array.from(el.querySelectorAll('img'))
      .filter((img) => !img.classList.contains('cm-widgetBuffer'))
      .map((img) => ({ src: img.getAttribute('src'), alt: img.alt, loaded: img.complete && img.naturalWidth > 0 }))
  }

  // What the editor shows, top to bottom: each line of the document as
  // rendered (its text without widgets, its line classes, its coloured spans
  // and images) and each block widget between lines.
  function rendered ({ park }) {
    if (park) {
      // As a reader who clicked on the title: no block is in editing mode.
      editor.view.dispatch({ selection: { anchor: 0 } })
    }
    const content = editor.view.contentDOM
    const items = []
    for (const el of content.children) {
      const images = imagesIn(el)
      if (el.classList.contains('cm-line')) {
        const plain = el.cloneNode(true)
        for (const widget of plain.querySelectorAll('[contenteditable="false"]')) widget.remove()
        const spans = Array.from(el.querySelectorAll('[class*="ansi-"]')).map((span) => ({
          text: span.textContent, classes: span.className, color: getComputedStyle(span).color
        }))
        items.push({ kind: 'line', text: plain.textContent, classes: el.className, spans, images })
      } else {
        items.push({ kind: 'widget', text: el.textContent, classes: el.className, spans: [], images })
      }
    }
    return { items, viewport: [editor.view.viewport.from, editor.view.viewport.to], length: editor.view.state.doc.length }
  }

  // The cell controls as shown: which buttons and indicators each cell has.
  function cells () {
    return Array.from(editor.view.contentDOM.querySelectorAll('.cm-cell-controls[data-cell-index]')).map((c) => ({
      index: Number(c.dataset.cellIndex),
      run: !!c.querySelector('.cm-cell-controls-btn-play'),
      stop: !!c.querySelector('.cm-cell-controls-btn-stop'),
      running: !!c.querySelector('.cm-cell-controls-status-running'),
      queued: !!c.querySelector('.cm-cell-controls-status-queued')
    }))
  }

  function collaborators () {
    return Array.from(document.querySelectorAll('#collaborators .mrmd-collaborator-item')).map((item) => ({
      name: (item.querySelector('.mrmd-collaborator-item__name') || {}).textContent || '',
      type: (item.querySelector('.mrmd-collaborator-item__badge') || {}).textContent || '',
      self: item.classList.contains('mrmd-collaborator-item--self'),
      clientId: Number(item.dataset.clientId)
    }))
  }

  // The line the cursor is on, and the line before it (the editor puts the
  // cursor in a stdin block on its own when a run asks for input).
  function cursor () {
    const state = editor.view.state
    const line = state.doc.lineAt(state.selection.main.head)
    const before = line.number > 1 ? state.doc.line(line.number - 1).text : null
    return { line: line.text, lineBefore: before, focused: editor.view.hasFocus }
  }

  window.mrmdTest = {
    open,
    rendered,
    cells,
    collaborators,
    cursor,
    text: () => editor.getContent(),
    setText: (text) => editor.setContent(text),
    executions: () => editor.ydoc.getMap('executions').toJSON(),
    monitorAvailable: () => editor.execution.isMonitorAvailable()
  }
})()
