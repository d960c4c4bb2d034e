% rebase("layout")
<h1 id="name">{{entry['name']}} wrote</h1>
<blockquote id="message">{{entry['message']}}</blockquote>
